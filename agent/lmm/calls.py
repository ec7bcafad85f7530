"""Calling the LMM: a retrying, traced call and its token usage."""

from __future__ import annotations

import logging
import time
from typing import Any

from agent.prediction import TraceEntry

log = logging.getLogger(__name__)


class LLMFailure(RuntimeError):
    """The chat model failed for good (after retries, or with an error that retrying cannot fix)."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        return False
    return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                            openai.InternalServerError))


def usage_of(message: Any) -> dict[str, int] | None:
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    return {k: int(usage.get(k, 0)) for k in ("input_tokens", "output_tokens", "total_tokens")}


def invoke_with_retries(model: Any, messages: list[Any], *, retries: int, backoff_s: float,
                        label: str = "lmm") -> tuple[Any, list[TraceEntry]]:
    """Call ``model.invoke(messages)``; retry transient failures ``retries`` times with exponential
    backoff. Return ``(reply, trace entries)``; raise LLMFailure (with the entries attached)."""
    entries: list[TraceEntry] = []
    for attempt in range(retries + 1):
        start = time.perf_counter()
        try:
            reply = model.invoke(messages)
        except Exception as exc:
            latency = (time.perf_counter() - start) * 1000
            entries.append(TraceEntry(tool=label, args={"attempt": attempt + 1}, summary="call failed",
                                      latency_ms=round(latency, 3), error=f"{type(exc).__name__}: {exc}"[:300]))
            if not _retryable(exc) or attempt == retries:
                failure = LLMFailure(f"{type(exc).__name__}: {exc}")
                failure.entries = entries  # type: ignore[attr-defined]
                raise failure from exc
            delay = backoff_s * (2**attempt)
            log.warning("LMM call failed (%s), retry %d/%d in %.1fs", exc, attempt + 1, retries, delay)
            time.sleep(delay)
            continue
        latency = (time.perf_counter() - start) * 1000
        calls = [c["name"] for c in getattr(reply, "tool_calls", None) or []]
        entries.append(TraceEntry(tool=label, args={"attempt": attempt + 1},
                                  summary=f"tool calls: {', '.join(calls)}" if calls else "answered",
                                  latency_ms=round(latency, 3), tokens=usage_of(reply)))
        return reply, entries
    raise AssertionError("unreachable")
