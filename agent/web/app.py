"""``geoagent serve``'s app: the retrieval API (``retrieval_service.service``) plus the agent's
endpoints and the web chat page.

* ``POST /v1/locate``: a photo (multipart ``image`` or JSON ``{"url"}``) -> the Prediction's JSON;
* ``POST /v1/locate/stream``: the same as server-sent events (see ``agent.web.events``), saved as a
  conversation (a thread) that follow-up questions continue;
* ``GET /v1/threads``, ``GET|DELETE /v1/threads/{id}``, ``POST /v1/threads/{id}/messages``
  ``{"text"}`` (``/messages/stream`` as events): earlier conversations and follow-up questions, on
  ``agent.conversation.threads.Threads`` (the agent's checkpointer);
* ``GET /``: the chat page (static files under ``agent/web/static``; Leaflet, leaflet.heat and the
  Natural Earth countries basemap from ``agent/assets`` at ``/assets``, the same vendored files the map pages inline; no CDN).

Every /v1 endpoint has the retrieval API's limits (body size, content type, image validation,
deadline, optional API key) and structured errors. Agent runs (locate, streams, follow-ups) have
their own admission lane, so they never starve the retrieval endpoints; a run whose client
disconnects or whose deadline passes is cancelled at its next step boundary (``agent.cancel``),
which frees its slot. Uploads are kept where every replica finds them (``uploads``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from agent.basemap import asset_path
from agent.cancel import cancel_scope
from agent.conversation.threads import ThreadError, Threads
from agent.conversation.uploads import Uploads
from agent.conversation.web import (
    CHAT_PREFIX,
    ChatHistory,
    ChatThread,
    FollowUpReply,
    FollowUpRequest,
    chat_history,
    chat_thread_id,
    listing,
)
from agent.prediction import Prediction
from agent.web.events import PING, sse, wire_event
from retrieval_service.core.cancel import Cancellation
from retrieval_service.core.errors import GeoAgentError
from retrieval_service.service.app import ERRORS, create_retrieval_app, require_key
from retrieval_service.service.errors import ErrorBody, ServiceError, as_service_error, error_payload
from retrieval_service.service.inputs import read_request
from retrieval_service.service.schemas import Options, image_request_body
from retrieval_service.service.settings import ServiceSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


class LocateOptions(Options):
    pass


def _not_found(exc: ThreadError) -> ServiceError:
    return ServiceError(
        404, "thread_not_found", exc.message, "GET /v1/threads lists the conversations; start one by sending a photo"
    )


THREAD_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such conversation (thread_not_found)"},
    501: {"model": ErrorBody, "description": "This server keeps no conversations (no_conversations)"},
}


def scoped(token: Cancellation, make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """``make()``'s items, the run stopping at its next step boundary once ``token`` is set."""
    with cancel_scope(token):
        yield from make()


def _no_threads() -> ServiceError:
    return ServiceError(
        501,
        "no_conversations",
        "this server keeps no conversations (its mode has no graph)",
        "serve a graph mode (geoagent serve --mode policy|agent|rag) for conversations and follow-ups",
    )


def _internal(exc: Exception) -> ServiceError:
    log.error("stream failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return ServiceError(
        500, "internal", f"internal error: {type(exc).__name__}", "retry; if it persists, report it with the server log"
    )


def create_app(
    predictor: Any,
    service_settings: ServiceSettings,
    *,
    retriever: Any = None,
    threads: Threads | None = None,
    uploads: Uploads | None = None,
    warm_up: bool = True,
) -> FastAPI:
    """The whole service around ``predictor`` (a ``load_agent`` result) for ``/v1/locate``;
    ``threads`` (``agent.conversation.threads.Threads`` over an agent with a checkpointer, e.g. the same agent's
    graph with a SQLite saver) holds the chat's conversations (without it the stream keeps none and
    the thread endpoints answer 501); ``uploads`` keeps their photos (default: on this machine's
    disk under the data dir; ``agent.conversation.store`` gives the one shared by replicas);
    ``retriever`` defaults to ``predictor.services.retriever``."""
    if retriever is None:
        retriever = predictor.services.retriever
    app = create_retrieval_app(retriever, service_settings, warm_up=warm_up, title="geoagent")
    state = app.state.geoagent
    kept = uploads or Uploads(Path(predictor.settings.data_dir) / "web" / "uploads", predictor.settings.cache_dir)
    reads, runs = state.admission.retrieval, state.admission.agent
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERRORS)

    def need_threads() -> Threads:
        if threads is None:
            raise _no_threads()
        return threads

    async def events(first: list[tuple[str, Any]], make: Callable[[], Iterator[Any]]) -> Any:
        """SSE of ``first`` events, then the wired events of ``make()`` (run on the agent lane,
        stopped at its next step when the client goes away or the deadline passes), then done."""
        for name, data in first:
            yield sse(name, data)
        token = Cancellation()
        try:
            async for event in runs.stream(lambda: scoped(token, make), cancel=token):
                if event is None:
                    yield PING
                    continue
                wired = wire_event(event)
                if wired is not None:
                    yield sse(*wired)
            yield sse("done", {})
        except GeoAgentError as exc:
            err = _not_found(exc) if isinstance(exc, ThreadError) else as_service_error(exc)
            yield sse("error", error_payload(err))
        except Exception as exc:  # the stream has started: the error is an event
            yield sse("error", error_payload(_internal(exc)))

    def streaming(body: Any) -> StreamingResponse:
        return StreamingResponse(
            body, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @api.post("/locate", tags=["agent"], openapi_extra=image_request_body(LocateOptions))
    async def locate(request: Request) -> Any:
        """Where was this photo taken? The agent's Prediction (answer, place, confidence,
        probabilities, search area, alternatives, rationale, evidence, trace)."""
        sources, fields = await read_request(request)
        LocateOptions.parse(fields)
        token = Cancellation()

        def job() -> Prediction:
            photo = state.photo(sources[0])
            with cancel_scope(token):
                return predictor.invoke({"image": photo})

        pred = await runs.run(job, request=request, cancel=token)
        return JSONResponse(pred.model_dump(mode="json"))

    @api.post(
        "/locate/stream",
        tags=["agent"],
        openapi_extra=image_request_body(LocateOptions),
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "thread, step_start/step_end/node/token, prediction, done (or error)",
            }
        },
    )
    async def locate_stream(request: Request) -> Any:
        """The agent's steps live (server-sent events), then the Prediction; starts a conversation."""
        sources, fields = await read_request(request)
        LocateOptions.parse(fields)
        source = sources[0]
        photo = await reads.run(state.photo, source, request=request)  # resolved once; a bad photo is a 4xx before the stream
        if threads is None:
            return streaming(events([], lambda: predictor.stream({"image": photo})))
        name = (
            source.url.rsplit("/", 1)[-1].split("?")[0]
            if source.url
            else source.name.removeprefix("the uploaded file ").strip("'")
        )
        upload = await reads.run(kept.keep, photo, name, request=request)  # the same bytes, under the name the chat lists
        tid = chat_thread_id()
        return streaming(events([("thread", {"thread_id": tid})], lambda: threads.stream_create(upload, thread_id=tid)))

    @api.get("/threads", response_model=list[ChatThread], tags=["threads"], responses=THREAD_ERRORS)
    async def list_threads(request: Request) -> Any:
        """The chat's conversations, the latest first."""
        return listing(await reads.run(need_threads().list, CHAT_PREFIX, request=request))

    @api.get("/threads/{tid}", response_model=ChatHistory, tags=["threads"], responses=THREAD_ERRORS)
    async def get_thread(tid: str, request: Request) -> Any:
        """One conversation: the photo, its prediction, the questions and answers, the LMM usage."""
        try:
            return chat_history(await reads.run(need_threads().history, tid, request=request))
        except ThreadError as exc:
            raise _not_found(exc) from exc

    @api.delete("/threads/{tid}", status_code=204, tags=["threads"], responses=THREAD_ERRORS)
    async def delete_thread(tid: str, request: Request) -> Response:
        try:
            await reads.run(need_threads().delete, tid, request=request)
        except ThreadError as exc:
            raise _not_found(exc) from exc
        return Response(status_code=204)

    def with_photo(store: Threads, tid: str) -> None:
        """The thread's photo on this machine (fetched from the shared uploads when another replica
        took it); a thread without a photo is left to ``ask`` to refuse."""
        photo = store.values(tid).get("photo")
        if photo is not None:
            kept.ensure(photo)

    @api.post("/threads/{tid}/messages", response_model=FollowUpReply, tags=["threads"], responses=THREAD_ERRORS)
    async def follow_up(tid: str, body: FollowUpRequest, request: Request) -> Any:
        """A follow-up question about the conversation's photo (the LMM looks again when one is
        configured; else it is answered from the analysis); kept in the conversation."""
        store = need_threads()
        token = Cancellation()

        def job() -> Any:
            with_photo(store, tid)
            with cancel_scope(token):
                return store.ask(tid, body.text)

        try:
            outcome = await runs.run(job, request=request, cancel=token)
        except ThreadError as exc:
            raise _not_found(exc) from exc
        return FollowUpReply(
            thread_id=tid,
            reply=outcome.reply,
            changed=outcome.changed,
            prediction=outcome.prediction,
            usage=outcome.usage,
            error=outcome.error,
        )

    @api.post(
        "/threads/{tid}/messages/stream",
        tags=["threads"],
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "steps and tokens (with an LMM), reply, done"},
            **THREAD_ERRORS,
        },
    )
    async def follow_up_stream(tid: str, body: FollowUpRequest, request: Request) -> Any:
        """A follow-up question as server-sent events: the LMM's steps and tokens, then ``reply``."""
        store = need_threads()
        try:
            await reads.run(store.history, tid, request=request)  # an unknown thread is a 404 before the stream
            await reads.run(with_photo, store, tid, request=request)
        except ThreadError as exc:
            raise _not_found(exc) from exc
        return streaming(events([("thread", {"thread_id": tid})], lambda: store.stream_ask(tid, body.text)))

    app.include_router(api)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/assets", StaticFiles(directory=asset_path("")), name="assets")  # Leaflet, leaflet.heat, the countries basemap

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app
