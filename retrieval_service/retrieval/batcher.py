"""A micro-batcher in front of the image encoder: the photos of concurrent requests are encoded
together, in one forward pass, instead of each request encoding its photo alone.

A caller hands its decoded images to ``encode`` and waits. One worker thread takes the first
waiting request, then gathers more until ``max_batch`` images are queued or ``max_wait_s`` has
passed since the first arrived, encodes them in one call and hands each caller its rows. While a
batch runs, new requests queue up and form the next one, so under load batches fill by themselves;
a request alone waits at most ``max_wait_s`` longer than it would have. One thread doing all the
encoding also keeps concurrent requests from each starting the model's full thread pool on the
same cores.

The ``Retriever`` puts one in front of its back end's encoder (``encoder.encode``), so every encoder
family batches the same way: the service's concurrent searches, and ``locate`` / ``eval run`` over
many photos with several workers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

Encode = Callable[[Sequence[Image.Image]], np.ndarray]


class _Request:
    __slots__ = ("future", "images")

    def __init__(self, images: list[Image.Image]) -> None:
        self.images = images
        self.future: Future[np.ndarray] = Future()


class EncodeBatcher:
    """``encode(images)`` through one worker that merges concurrent calls into batches."""

    def __init__(self, encode: Encode, *, max_batch: int = 16, max_wait_s: float = 0.005, name: str = "encoder") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self.name = name
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0  # forward passes run
        self.images = 0  # images encoded in them

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The encoder's rows for ``images`` (in order), computed in a batch with other callers'."""
        images = list(images)
        if not images:
            return self._encode(images)
        parts = [images[i : i + self.max_batch] for i in range(0, len(images), self.max_batch)]
        requests = [_Request(part) for part in parts]
        self._start()
        for request in requests:
            self._queue.put(request)
        return np.concatenate([request.future.result() for request in requests])

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} batcher is closed")
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name=f"geoagent-{self.name}-batcher", daemon=True)
                self._worker.start()

    def _gather(self, first: _Request) -> tuple[list[_Request], _Request | None]:
        """``first`` and the requests that join it within the wait, up to ``max_batch`` images; a
        request that would overflow the batch is handed back for the next one."""
        batch, count = [first], len(first.images)
        until = time.perf_counter() + self.max_wait_s
        while count < self.max_batch:
            try:
                left = until - time.perf_counter()
                nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:  # closing: finish this batch, then stop
                self._queue.put(None)
                break
            if count + len(nxt.images) > self.max_batch:
                return batch, nxt
            batch.append(nxt)
            count += len(nxt.images)
        return batch, None

    def _run(self) -> None:
        carried: _Request | None = None
        while True:
            first = carried if carried is not None else self._queue.get()
            if first is None:
                return
            batch, carried = self._gather(first)
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                rows = self._encode([img for r in live for img in r.images])
            except BaseException as exc:  # every caller of the batch gets the error
                for r in live:
                    r.future.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(rows)
            start = 0
            for r in live:
                r.future.set_result(rows[start : start + len(r.images)])
                start += len(r.images)

    def close(self) -> None:
        """Stop the worker after the batches already queued."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None and worker.is_alive():
            self._queue.put(None)
            worker.join(timeout=60)
