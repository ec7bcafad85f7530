"""The service's limits: request body size (an ASGI middleware), the API key, and ``Gate``: at
most N requests worked on at once, a bounded queue before them, and one deadline for both."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import Request

from retrieval_service.service.errors import ServiceError, error_payload
from retrieval_service.service.settings import ServiceSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")


def too_large(limit: int) -> ServiceError:
    return ServiceError(
        413,
        "too_large",
        f"the request body is larger than {limit / 2**20:.1f} MiB",
        "send a smaller photo (downscale it: a few megapixels are plenty), or raise GEOAGENT_SERVICE_MAX_UPLOAD_MB",
    )


class BodyLimit:
    """Refuse bodies over ``limit`` bytes: at once from Content-Length, else while they stream in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            body = json.dumps(error_payload(too_large(self.limit))).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return None
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large(self.limit)
            return message

        return await self.app(scope, counted, send)


def check_api_key(request: Request, key: str | None) -> None:
    """Raise 401 unless the request carries ``key`` (no key configured: everything passes)."""
    if not key:
        return
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = given or auth[7:].strip()
    if not given or not secrets.compare_digest(given.encode(), key.encode()):
        raise ServiceError(
            401,
            "unauthorized",
            "a valid API key is required",
            "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (GEOAGENT_SERVICE_API_KEY on the server)",
            headers={"WWW-Authenticate": "Bearer"},
        )


class Gate:
    """Runs blocking work on ``max_concurrency`` threads, with at most ``max_queue`` requests waiting
    and a deadline of ``timeout_s`` per request (queueing included). A timed-out job that already
    started finishes on its thread, keeping its slot, so timeouts never overload the models."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.max_concurrency = settings.service_max_concurrency
        self.max_queue = settings.service_max_queue
        self.timeout_s = settings.service_timeout_s
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="geoagent-service")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future:
        with self._lock:
            if self._pending >= self.max_concurrency + self.max_queue:
                raise ServiceError(
                    503,
                    "busy",
                    f"the server is busy ({self._pending} requests in progress or queued)",
                    "retry in a few seconds",
                    headers={"Retry-After": "2"},
                )
            self._pending += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._release)
        return future

    def _release(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1

    def timeout(self) -> ServiceError:
        return ServiceError(
            504,
            "timeout",
            f"the request took longer than {self.timeout_s:.0f} s",
            "retry later or with a smaller photo; the server's limit is GEOAGENT_SERVICE_TIMEOUT_S",
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future = self._submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout_s)
        except TimeoutError:
            future.cancel()  # drops it if still queued; a running job finishes on its thread
            raise self.timeout() from None

    async def stream(self, make: Callable[[], Iterator[T]], *, ping_s: float = 15.0) -> AsyncIterator[T | None]:
        """Iterate a blocking generator on a worker thread, yielding its items as they come (and
        ``None`` every ``ping_s`` of silence, for keep-alives). Stops the generator when the
        consumer goes away; raises the deadline's ServiceError or the generator's exception."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        done = object()

        def pump() -> None:
            try:
                iterator = make()
                try:
                    for item in iterator:
                        loop.call_soon_threadsafe(queue.put_nowait, (True, item))
                        if stop.is_set():
                            break
                finally:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
                loop.call_soon_threadsafe(queue.put_nowait, (True, done))
            except BaseException as exc:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, (False, exc))

        future = self._submit(pump)
        deadline = loop.time() + self.timeout_s
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise self.timeout()
                try:
                    ok, item = await asyncio.wait_for(queue.get(), min(ping_s, left))
                except TimeoutError:
                    yield None
                    continue
                if not ok:
                    raise item
                if item is done:
                    return
                yield item
        finally:
            stop.set()
            future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
