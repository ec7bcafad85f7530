"""``geoagent serve``'s app: the retrieval API (``retrieval_service.service``) plus the agent's
endpoints and the web chat page.

* ``POST /v1/locate``: a photo (multipart ``image`` or JSON ``{"url"}``) -> the Prediction's JSON;
* ``POST /v1/locate/stream``: the same as server-sent events (see ``agent.web.events``), saved as a
  conversation (a thread) that follow-up questions continue;
* ``GET /v1/threads``, ``GET|DELETE /v1/threads/{id}``, ``POST /v1/threads/{id}/messages``
  ``{"text"}``: earlier conversations and follow-up questions;
* ``GET /``: the chat page (static files under ``agent/web/static``; Leaflet, leaflet.heat and the
  land basemap from ``agent/assets`` at ``/assets``, the same vendored files the map pages inline; no CDN).

Every /v1 endpoint has the retrieval API's limits (body size, content type, image validation,
concurrency gate and deadline, optional API key) and structured errors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from agent.basemap import asset_path
from agent.prediction import Prediction
from agent.web.events import PING, sse, wire_event
from agent.web.threads import Thread, ThreadNotFound, ThreadStore, ThreadSummary, answer_follow_up
from retrieval_service.core.errors import GeoAgentError
from retrieval_service.service.app import ERRORS, create_retrieval_app, require_key
from retrieval_service.service.errors import ServiceError, as_service_error, error_payload
from retrieval_service.service.inputs import read_request
from retrieval_service.service.schemas import Options, image_request_body
from retrieval_service.service.settings import ServiceSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


class LocateOptions(Options):
    title: str | None = Field(default=None, max_length=200, description="A name for the conversation (stream only).")


class FollowUpRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4000, description="The question about the thread's photo.")


class FollowUpReply(BaseModel):
    thread_id: str
    reply: str


def _not_found(exc: ThreadNotFound) -> ServiceError:
    return ServiceError(404, "thread_not_found", exc.message, exc.hint)


def _summary(pred: Prediction) -> str:
    from agent.chat import summary

    return summary(pred.model_dump(mode="json"))


def create_app(predictor: Any, service_settings: ServiceSettings, *, retriever: Any = None, threads: ThreadStore | None = None,
               warm_up: bool = True) -> FastAPI:
    """The whole service around ``predictor`` (a ``load_agent`` result); ``retriever`` defaults to
    the predictor's own (``predictor.services.retriever``); ``threads`` to a store under the data dir."""
    if retriever is None:
        retriever = predictor.services.retriever
    store = threads or ThreadStore(Path(predictor.settings.data_dir) / "web" / "threads.sqlite")
    app = create_retrieval_app(retriever, service_settings, warm_up=warm_up, title="geoagent")
    state = app.state.geoagent
    app.state.threads = store
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERRORS)

    @api.post("/locate", tags=["agent"], openapi_extra=image_request_body(LocateOptions))
    async def locate(request: Request) -> Any:
        """Where was this photo taken? The agent's Prediction (answer, place, confidence,
        probabilities, search area, alternatives, rationale, evidence, trace)."""
        sources, fields = await read_request(request)
        LocateOptions.parse(fields)

        def job() -> Prediction:
            return predictor.invoke({"image": state.photo(sources[0])})

        pred = await state.gate.run(job)
        return JSONResponse(pred.model_dump(mode="json"))

    @api.post("/locate/stream", tags=["agent"], openapi_extra=image_request_body(LocateOptions),
              responses={200: {"content": {"text/event-stream": {}}, "description": "thread, step_start/step_end/node/token, prediction, done"}})
    async def locate_stream(request: Request) -> Any:
        """The agent's steps live (server-sent events), then the Prediction; starts a conversation."""
        sources, fields = await read_request(request)
        opts = LocateOptions.parse(fields)
        source = sources[0]
        data = await state.gate.run(state.photo, source)  # a bad photo is a 4xx before the stream starts
        title = opts.title or source.url or source.name.removeprefix("the uploaded file ").strip("'")
        tid = store.create(title)
        store.add(tid, "user", f"Where was this photo taken? ({title})")

        async def events() -> Any:
            yield sse("thread", {"thread_id": tid})
            pred: Prediction | None = None
            try:
                async for event in state.gate.stream(lambda: predictor.stream({"image": data})):
                    if event is None:
                        yield PING
                        continue
                    wired = wire_event(event)
                    if wired is None:
                        continue
                    if wired[0] == "prediction":
                        pred = event["prediction"]
                    yield sse(*wired)
                if pred is None:
                    raise ServiceError(500, "internal", "the agent ended without a prediction", "see the server log")
                store.add(tid, "assistant", _summary(pred), pred)
                yield sse("done", {})
            except GeoAgentError as exc:
                err = as_service_error(exc)
                store.add(tid, "assistant", f"error: {err.message}")
                yield sse("error", error_payload(err))
            except Exception as exc:  # the stream has started: the error is an event, logged here
                log.exception("locate stream failed")
                yield sse("error", error_payload(ServiceError(500, "internal", f"internal error: {type(exc).__name__}",
                                                              "retry; if it persists, report it with the server log")))

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/threads", response_model=list[ThreadSummary], tags=["threads"])
    async def list_threads(limit: int = 100) -> Any:
        """Earlier conversations, the latest first."""
        return await state.gate.run(store.list, max(1, min(limit, 1000)))

    @api.get("/threads/{tid}", response_model=Thread, tags=["threads"])
    async def get_thread(tid: str) -> Any:
        """One conversation: its messages, with the analysis on the answer to the photo."""
        try:
            return await state.gate.run(store.get, tid)
        except ThreadNotFound as exc:
            raise _not_found(exc) from exc

    @api.delete("/threads/{tid}", status_code=204, tags=["threads"])
    async def delete_thread(tid: str) -> Response:
        try:
            await state.gate.run(store.delete, tid)
        except ThreadNotFound as exc:
            raise _not_found(exc) from exc
        return Response(status_code=204)

    @api.post("/threads/{tid}/messages", response_model=FollowUpReply, tags=["threads"])
    async def follow_up(tid: str, body: FollowUpRequest) -> Any:
        """A follow-up question about the conversation's photo; the answer is saved with it."""

        def job() -> str:
            thread = store.get(tid)
            reply = answer_follow_up(thread, body.text, chat_model=getattr(predictor, "chat_model", None),
                                     settings=predictor.settings)
            store.add(tid, "user", body.text)
            store.add(tid, "assistant", reply)
            return reply

        try:
            reply = await state.gate.run(job)
        except ThreadNotFound as exc:
            raise _not_found(exc) from exc
        return FollowUpReply(thread_id=tid, reply=reply)

    app.include_router(api)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/assets", StaticFiles(directory=asset_path("")), name="assets")  # Leaflet, leaflet.heat, the land basemap

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app
