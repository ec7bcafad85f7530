"""Stopping a run at its next step boundary when nobody waits for it any more.

``with cancel_scope(token): agent.invoke(...)`` (or while iterating ``agent.stream(...)`` /
``Threads.stream_create(...)``) makes the run check ``token`` (a ``core.cancel.Cancellation``) before
every graph node, tool call and LMM request, through a LangChain callback handler registered as a
configure hook: every runnable configured inside the scope (LangGraph copies the context into its
node threads) carries it, so no signature changes. When the token is set the run raises
``Cancelled`` at the next boundary; a step that has started finishes. A waiting LMM request also
watches the token (``agent.lmm.calls``), so a hung endpoint does not hold the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from retrieval_service.core.cancel import Cancellation, Cancelled

__all__ = ["CancelAtBoundary", "Cancellation", "Cancelled", "cancel_scope", "current_cancellation"]


class CancelAtBoundary(BaseCallbackHandler):
    """Raises ``Cancelled`` when a node, a tool or a model request starts after its token was set."""

    raise_error = True  # LangChain re-raises the handler's exception into the run
    run_inline = True

    def __init__(self, token: Cancellation) -> None:
        self.token = token

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.token.check()

    def on_tool_start(self, serialized: Any, input_str: str, **kwargs: Any) -> None:
        self.token.check()

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.token.check()

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        self.token.check()


_HANDLER: ContextVar[CancelAtBoundary | None] = ContextVar("geoagent_cancel_handler", default=None)
register_configure_hook(_HANDLER, inheritable=True)


class _QuietCancellation(logging.Filter):
    """LangChain logs a warning for every exception a callback raises; a cancellation is no error
    (the service logs and counts it once), so its record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and args[0] == CancelAtBoundary.__name__)


logging.getLogger("langchain_core.callbacks.manager").addFilter(_QuietCancellation())


@contextmanager
def cancel_scope(token: Cancellation) -> Iterator[Cancellation]:
    """Runs started (or a stream iterated) inside the block stop at their next step boundary once
    ``token`` is set."""
    reset = _HANDLER.set(CancelAtBoundary(token))
    try:
        yield token
    finally:
        _HANDLER.reset(reset)


def current_cancellation() -> Cancellation | None:
    """The token of the enclosing ``cancel_scope`` (None outside one)."""
    handler = _HANDLER.get()
    return handler.token if handler is not None else None
