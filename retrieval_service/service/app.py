"""The retrieval API: ``create_retrieval_app(retriever, settings)`` gives a FastAPI app serving

* ``POST /v1/search``: a photo (multipart ``image`` or JSON ``{"url"}``) -> ``RetrievalResult``
  (gallery candidates, database neighbours, dissimilar ones; options k_gallery, k_database,
  dissimilar, filter);
* ``POST /v1/embed``: photos -> CLIP or GeoCLIP-head vectors; JSON ``{"locations"}`` -> location vectors;
* ``POST /v1/verify``: a photo and ``locations`` -> cosine scores;
* ``GET /v1/collections``: the store's collections and models; ``GET /healthz``, ``GET /readyz``;
  OpenAPI docs at ``/docs``.

``retriever`` is anything with the ``Retriever``'s interface (``RetrievalClient`` too, so a
service can front another). Each request's photo becomes one ``Photo`` (``ServiceState.photo``:
checked, stored content-addressed under the data dir's cache) that the retriever decodes. Blocking
work runs on the ``retrieval`` lane of ``admission`` (its own concurrency, queue and deadline; the
agent's runs have another lane), which drops it when the client disconnects.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.photo import Photo
from retrieval_service.core.types import RetrievalResult
from retrieval_service.service.admission import Admission
from retrieval_service.service.errors import ErrorBody, ServiceError, as_service_error, install_error_handlers
from retrieval_service.service.inputs import ImageSource, read_request
from retrieval_service.service.limits import BodyLimit, check_api_key
from retrieval_service.service.schemas import (
    EmbedOptions,
    EmbedResponse,
    Health,
    LocationsOptions,
    Readiness,
    SearchOptions,
    VerifyResponse,
    image_request_body,
)
from retrieval_service.service.settings import ServiceSettings

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Not valid JSON (bad_json), or a URL the server may not fetch (url_not_allowed)"),
        (401, "Missing or wrong API key"),
        (413, "Body too large"),
        (415, "Not an image / wrong content type"),
        (422, "Invalid photo or options"),
        (500, "The server's own failure (internal, server_config, model_mismatch)"),
        (503, "Busy: the request's lane is full (retry after Retry-After); or the store or the weights are unavailable"),
        (504, "Timed out, waiting for a slot included (an agent run is stopped at its next step)"),
    )
}
ERRORS[503]["headers"] = {
    "Retry-After": {"description": "Seconds until a slot is likely free (busy answers)", "schema": {"type": "integer"}}
}


class ServiceState:
    """What the endpoints share (``app.state.geoagent``); the agent's endpoints use it too."""

    def __init__(self, retriever: Any, settings: ServiceSettings) -> None:
        self.retriever = retriever
        self.settings = settings
        self.admission = Admission(settings)
        self.ready = threading.Event()
        self.warm_error: ServiceError | None = None

    def photo(self, source: ImageSource) -> Photo:
        """A request's photo as one checked ``Photo``, stored under the data dir's cache (a URL is
        fetched under the URL policy); blocking. The endpoints pass it on; nothing checks it again."""
        return source.resolve(
            self.settings.cache_dir,
            allow_private=self.settings.service_allow_private_urls,
            max_bytes=self.settings.max_upload_bytes,
            limits=self.settings.media_limits,
        )

    def warm_up(self) -> None:
        try:
            self.retriever.warm_up()
            self.ready.set()
            logger.info("retrieval is ready")
        except GeoAgentError as exc:
            self.warm_error = as_service_error(exc)
            logger.error("retrieval cannot start: %s (fix: %s)", exc.message, exc.hint)
        except Exception as exc:  # reported by /readyz, the server stays up to say so
            self.warm_error = ServiceError(500, "internal", f"warm-up failed: {type(exc).__name__}: {exc}", "see the server log")
            logger.exception("warm-up failed")


def state_of(request: Request) -> ServiceState:
    return request.app.state.geoagent


def require_key(request: Request) -> None:
    check_api_key(request, state_of(request).settings.service_api_key)


def _one(sources: list[ImageSource]) -> ImageSource:
    return sources[0]


def create_retrieval_app(
    retriever: Any, settings: ServiceSettings, *, warm_up: bool = True, title: str = "geoagent retrieval"
) -> FastAPI:
    """The retrieval API over ``retriever``; ``warm_up`` loads the models and gallery in the background
    at start (``/readyz`` says when they are ready, or why they cannot be)."""
    state = ServiceState(retriever, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warm_up:
            threading.Thread(target=state.warm_up, name="geoagent-warm-up", daemon=True).start()
        else:
            state.ready.set()
        yield
        state.admission.close()

    app = FastAPI(
        title=title,
        version="1",
        lifespan=lifespan,
        description="Where was this photo taken? Retrieval (and, with `geoagent serve`, the agent) over HTTP. "
        'Photos are multipart uploads in the field `image`, or JSON `{"url": ...}`.',
    )
    app.state.geoagent = state
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    install_error_handlers(app)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """The process is up; each lane's load and counters (admitted, refused, timed out,
        disconnected, dropped, cancelled)."""
        return Health(lanes=state.admission.stats())

    @app.get("/readyz", response_model=Readiness, tags=["health"], responses={503: {"model": Readiness}})
    def readyz() -> Any:
        """Models and gallery are loaded (503 while warming up, or with the reason they cannot load)."""
        if state.ready.is_set():
            return Readiness(ready=True)
        if state.warm_error is not None:
            body = Readiness(ready=False, detail=state.warm_error.message, fix=state.warm_error.hint)
        else:
            body = Readiness(ready=False, detail="warming up: loading the image encoder and the GPS gallery")
        return JSONResponse(body.model_dump(), status_code=503)

    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERRORS)
    lane = state.admission.retrieval

    @api.post("/search", response_model=RetrievalResult, tags=["retrieval"], openapi_extra=image_request_body(SearchOptions))
    async def search(request: Request) -> Any:
        """GPS-gallery candidates and image-database neighbours for one photo."""
        sources, fields = await read_request(request)
        opts = SearchOptions.parse(fields)

        def job() -> RetrievalResult:
            return retriever.search(
                state.photo(_one(sources)),
                k_gallery=opts.k_gallery,
                k_database=opts.k_database,
                geo_filter=opts.filter,
                dissimilar=opts.dissimilar,
            )

        result = await lane.run(job, request=request)
        return JSONResponse(result.model_dump(mode="json"))

    @api.post(
        "/embed",
        response_model=EmbedResponse,
        tags=["retrieval"],
        openapi_extra=image_request_body(EmbedOptions, many=True, json_extra=LocationsOptions.model_json_schema()),
    )
    async def embed(request: Request) -> Any:
        """Vectors of photos (space clip or gps), or of locations (JSON {"locations": [{lat, lon}]})."""
        sources, fields = await read_request(request, images="many", json_only_ok=True)
        if not sources:
            points = LocationsOptions.parse(fields).locations

            def locations_job() -> np.ndarray:
                return retriever.encode_locations([(p.lat, p.lon) for p in points])

            vectors, space = await lane.run(locations_job, request=request), "location"
        else:
            opts = EmbedOptions.parse(fields)

            def job() -> np.ndarray:
                photos = [state.photo(s) for s in sources]
                return retriever.embed_images(photos) if opts.space == "clip" else retriever.gps_embed_images(photos)

            vectors, space = await lane.run(job, request=request), opts.space
        arr = np.asarray(vectors, dtype=np.float32)
        return JSONResponse({"space": space, "dim": int(arr.shape[1]) if arr.ndim == 2 else 0, "vectors": arr.tolist()})

    @api.post("/verify", response_model=VerifyResponse, tags=["retrieval"], openapi_extra=image_request_body(LocationsOptions))
    async def verify(request: Request) -> Any:
        """Cosine similarity of the photo's GeoCLIP embedding and each location's."""
        sources, fields = await read_request(request)
        points = LocationsOptions.parse(fields).locations

        def job() -> list[float]:
            return list(retriever.verify(state.photo(_one(sources)), [(p.lat, p.lon) for p in points]))

        return JSONResponse({"scores": [float(s) for s in await lane.run(job, request=request)]})

    @api.get("/collections", tags=["retrieval"])
    async def collections(request: Request) -> Any:
        """The store's collections (points, dims), whether the gallery is ready, models and device."""
        return JSONResponse(await lane.run(retriever.info, request=request))

    app.include_router(api)
    return app
