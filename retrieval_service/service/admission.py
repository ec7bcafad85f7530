"""Admission by kind: each kind of request has its own ``Lane`` (its worker threads, its bounded
queue, its deadline), so a wave of agent runs can never starve searches.

* ``retrieval``: search, embed, verify, collections and the conversations' reads (short, cheap);
* ``agent``: locate, its stream and follow-up questions (long: a whole graph run, maybe an LMM).

A lane runs blocking work on ``concurrency`` threads with at most ``queue`` requests waiting; a full
lane answers 503 ``busy`` at once with a ``Retry-After`` estimated from its recent work times. Each
piece of work carries a ``Cancellation``: when the deadline passes or the client disconnects (the
lane watches the connection while it waits), the token is set, queued work is dropped before it
starts and running work stops at its next step boundary (``agent.cancel``), which frees the slot.
Every lane counts what it admitted, refused, timed out, lost to a disconnect and cancelled
(``stats()``, served by ``/healthz``), and logs each cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from fastapi import Request
from pydantic import BaseModel, Field

from retrieval_service.core.cancel import Cancellation, Cancelled
from retrieval_service.service.errors import ServiceError
from retrieval_service.service.settings import ServiceSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
LaneName = Literal["retrieval", "agent"]
WATCH_S = 0.25  # how often a waiting request looks at its connection
_DONE = object()


class ClientGone(ServiceError):
    """The client closed the connection before the answer (nobody receives this response)."""

    def __init__(self) -> None:
        super().__init__(499, "client_closed_request", "the client closed the connection", "nothing to fix on the server")


class LaneStats(BaseModel):
    """One lane's limits, load and counters since the server started."""

    concurrency: int = Field(description="Requests worked on at once.")
    queue: int = Field(description="Requests allowed to wait for a slot.")
    running: int = Field(description="Requests being worked on now.")
    waiting: int = Field(description="Requests waiting for a slot now.")
    admitted: int = Field(description="Requests accepted into the lane.")
    refused: int = Field(description="Requests refused with 503 busy (lane full).")
    timed_out: int = Field(description="Requests that reached their deadline (504).")
    disconnected: int = Field(description="Requests whose client went away before the answer.")
    dropped: int = Field(description="Work given up while still queued (it never started).")
    cancelled: int = Field(description="Running work stopped at a step boundary by its cancellation.")


class Lane:
    """Blocking work of one kind: ``concurrency`` threads, ``queue`` waiting, ``timeout_s`` per request."""

    def __init__(self, name: str, concurrency: int, queue: int, timeout_s: float) -> None:
        self.name = name
        self.concurrency = concurrency
        self.queue = queue
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"geoagent-{name}")
        self._lock = threading.Lock()
        self._pending = 0  # running + waiting
        self._running = 0
        self._mean_s = 0.0  # exponentially weighted mean work time, for Retry-After
        self._counts = dict.fromkeys(("admitted", "refused", "timed_out", "disconnected", "dropped", "cancelled"), 0)

    # ------------------------------------------------------------------ bookkeeping
    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def stats(self) -> LaneStats:
        with self._lock:
            return LaneStats(
                concurrency=self.concurrency,
                queue=self.queue,
                running=self._running,
                waiting=self._pending - self._running,
                **self._counts,
            )

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the waiting work over the slots, at the recent mean work time."""
        with self._lock:
            mean, pending = self._mean_s or 1.0, self._pending
        return max(1, min(300, math.ceil(mean * max(1, pending - self.concurrency + 1) / self.concurrency)))

    def busy(self) -> ServiceError:
        return ServiceError(
            503,
            "busy",
            f"the server is busy: {self.concurrency} {self.name} requests are running and {self.queue} waiting",
            f"retry after the Retry-After delay; {self.name} requests have their own limit "
            f"(GEOAGENT_SERVICE_{'AGENT_' if self.name == 'agent' else ''}MAX_CONCURRENCY / _MAX_QUEUE on the server)",
            headers={"Retry-After": str(self.retry_after_s())},
        )

    def timeout(self) -> ServiceError:
        stopped = "; its run was stopped" if self.name == "agent" else ""
        return ServiceError(
            504,
            "timeout",
            f"the request took longer than {self.timeout_s:g} s (waiting for a slot included){stopped}",
            "retry later or with a smaller photo; the server's limit is GEOAGENT_SERVICE_TIMEOUT_S",
        )

    def _work(self, token: Cancellation, fn: Callable[..., T], args: tuple) -> T:
        token.check()  # given up while it waited: never starts
        with self._lock:
            self._running += 1
        started = time.perf_counter()
        try:
            return fn(*args)
        except Cancelled as exc:
            self._count("cancelled")
            logger.info(
                "%s lane: work stopped at a step boundary after %.1f s (%s)", self.name, time.perf_counter() - started, exc.reason
            )
            raise
        finally:
            took = time.perf_counter() - started
            with self._lock:
                self._running -= 1
                self._mean_s = took if not self._mean_s else 0.8 * self._mean_s + 0.2 * took

    def _submit(self, token: Cancellation, fn: Callable[..., T], *args: Any) -> Future:
        with self._lock:
            if self._pending >= self.concurrency + self.queue:
                self._counts["refused"] += 1
                full = True
            else:
                self._pending += 1
                self._counts["admitted"] += 1
                full = False
        if full:
            raise self.busy()
        future = self._pool.submit(self._work, token, fn, args)
        future.add_done_callback(self._release)
        return future

    def _release(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _give_up(self, token: Cancellation, future: Future, why: Literal["timed_out", "disconnected"], reason: str) -> None:
        """Nobody waits for ``future`` any more: drop it if it has not started, else stop it at its
        next step boundary (its slot is freed when it returns)."""
        self._count(why)
        token.cancel(reason)
        if future.cancel():
            self._count("dropped")
            logger.info("%s lane: dropped a queued request (%s)", self.name, reason)

    # ------------------------------------------------------------------ the endpoints' side
    async def run(
        self, fn: Callable[..., T], *args: Any, request: Request | None = None, cancel: Cancellation | None = None
    ) -> T:
        """``fn(*args)`` on the lane; 503 when it is full, 504 at the deadline. ``cancel`` is the
        token ``fn`` checks (a fresh one when not given); ``request``: its connection is watched."""
        token = cancel or Cancellation()
        future = self._submit(token, fn, *args)
        waiter = asyncio.wrap_future(future)
        waiter.add_done_callback(_retrieve)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    self._give_up(token, future, "timed_out", f"its deadline of {self.timeout_s:g} s passed")
                    raise self.timeout()
                done, _ = await asyncio.wait({waiter}, timeout=min(WATCH_S, left) if request is not None else left)
                if done:
                    return waiter.result()
                if request is not None and await request.is_disconnected():
                    self._give_up(token, future, "disconnected", "the client disconnected")
                    raise ClientGone()
        except asyncio.CancelledError:  # the server is stopping, or the connection task was cancelled
            self._give_up(token, future, "disconnected", "the request was cancelled")
            raise

    async def stream(
        self, make: Callable[[], Iterator[T]], *, cancel: Cancellation | None = None, ping_s: float = 15.0
    ) -> AsyncIterator[T | None]:
        """Iterate a blocking generator on the lane, yielding its items as they come (``None`` every
        ``ping_s`` of silence, for keep-alives). When the consumer goes away (the client
        disconnected) or the deadline passes, the token is set and the generator stops at its next
        step boundary; raises the deadline's ServiceError or the generator's exception."""
        token = cancel or Cancellation()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(ok: bool, item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (ok, item))

        def pump() -> None:
            try:
                for item in make():
                    put(True, item)
                    if token.cancelled:  # closing the generator stops it where it is
                        break
                token.check()  # stopped by its token: counted as cancelled
                put(True, _DONE)
            except BaseException as exc:  # handed to the consumer
                put(False, exc)
                if isinstance(exc, Cancelled):
                    raise

        future = self._submit(token, pump)
        future.add_done_callback(_retrieve)
        deadline = loop.time() + self.timeout_s
        finished = False
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    self._give_up(token, future, "timed_out", f"its deadline of {self.timeout_s:g} s passed")
                    finished = True
                    raise self.timeout()
                try:
                    ok, item = await asyncio.wait_for(queue.get(), min(ping_s, left))
                except TimeoutError:
                    yield None
                    continue
                if not ok:
                    finished = True
                    raise item
                if item is _DONE:
                    finished = True
                    return
                yield item
        finally:
            if not finished:  # the consumer stopped reading: the client went away
                self._give_up(token, future, "disconnected", "the client disconnected")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _retrieve(future: Any) -> None:
    """Mark a future's exception as seen (nobody may await it any more)."""
    if not future.cancelled():
        future.exception()


class Admission:
    """The service's lanes, one per kind of request."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.retrieval = Lane(
            "retrieval", settings.service_max_concurrency, settings.service_max_queue, settings.service_timeout_s
        )
        self.agent = Lane(
            "agent", settings.service_agent_max_concurrency, settings.service_agent_max_queue, settings.service_timeout_s
        )

    def stats(self) -> dict[str, LaneStats]:
        return {"retrieval": self.retrieval.stats(), "agent": self.agent.stats()}

    def close(self) -> None:
        self.retrieval.close()
        self.agent.close()
