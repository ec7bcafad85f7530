"""A circuit breaker for the LMM endpoint, shared by every photo of a run or batch.

After ``failures`` consecutive failed requests the breaker opens: requests are refused at once (the
graphs fall back to the no-LMM policy) instead of waiting on a dead or hung endpoint photo after
photo. After ``reset_s`` seconds one trial request is let through (half-open); its success closes the
breaker, its failure opens it again. ``reset_s = 0`` keeps it open for the rest of the batch.

Written here rather than taken from pybreaker: pybreaker holds its lock for the whole guarded call,
which would serialise the LMM requests of concurrent evaluation workers; this one only guards its
counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive LMM failures; thread-safe; never held while a request runs."""

    def __init__(self, failures: int = 3, reset_s: float = 600.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError("failures must be >= 1")
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.trips = 0
        self.last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self.reset_s > 0 and self._clock() - self._opened_at >= self.reset_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether a request may be sent now (in half-open state: one trial request at a time)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._probing = False

    def failure(self, error: str = "") -> None:
        with self._lock:
            self._consecutive += 1
            self.last_error = error or self.last_error
            was_probing, self._probing = self._probing, False
            if was_probing or (self._opened_at is None and self._consecutive >= self.failures):
                self._opened_at = self._clock()
                self.trips += 1
                log.warning(
                    "the LMM failed %d times in a row (%s); skipping it %s",
                    self._consecutive,
                    error,
                    f"for {self.reset_s:.0f} s" if self.reset_s > 0 else "for the rest of the batch",
                )

    def describe(self) -> str:
        """Why requests are refused, for warnings."""
        when = (
            f"a trial request is allowed {self.reset_s:.0f} s after it opened"
            if self.reset_s > 0
            else "it stays open for this batch"
        )
        return (
            f"the LMM circuit breaker is open after {self.failures} consecutive failed requests "
            f"(last: {self.last_error or 'unknown'}); {when}"
        )
