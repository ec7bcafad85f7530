"""Cancelling work nobody waits for: a ``Cancellation`` is set by whoever gave up on the work (the
HTTP service when a client hangs up or a deadline passes) and checked by the work itself at its step
boundaries, which then stops with ``Cancelled``.

The token never interrupts a step in the middle: a step that has started finishes, and the next one
does not begin. The agent checks it before every graph node, tool and LMM request (``agent.cancel``);
the service's lanes drop queued work whose token is set before it starts.
"""

from __future__ import annotations

import threading

from retrieval_service.core.errors import GeoAgentError


class Cancelled(GeoAgentError):
    """The work was cancelled before it finished (``reason``: why, e.g. "the client disconnected")."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the run was cancelled: {reason}", "nobody waits for this result any more; send the request again")
        self.reason = reason


class Cancellation:
    """A thread-safe, one-way flag with the reason it was set."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> bool:
        """Set the flag (the first reason is kept); True when this call set it."""
        if self._event.is_set():
            return False
        self.reason = reason
        self._event.set()
        return True

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` when the flag is set: call it at a step boundary."""
        if self._event.is_set():
            raise Cancelled(self.reason)

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``, waking early when cancelled; True when cancelled."""
        return self._event.wait(max(0.0, timeout_s))
