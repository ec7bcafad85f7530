"""The LMM: a factory for OpenAI-compatible chat models and a retrying, traced call."""

from __future__ import annotations

import logging
import time
from typing import Any

from retrieval_service.errors import ConfigError

log = logging.getLogger(__name__)


class LLMFailure(RuntimeError):
    """The chat model failed for good (after retries, or with an error that retrying cannot fix)."""


def make_chat_model(settings: Any) -> Any:
    """A ``ChatOpenAI`` for ``settings.llm_model`` at ``settings.llm_base_url`` (any OpenAI-compatible
    endpoint: OpenAI, vLLM, Ollama, llama.cpp server, DashScope).

    The client's own retries are off: :func:`invoke_with_retries` retries with backoff so that each
    attempt shows in the trace.
    """
    if not settings.llm_model:
        raise ConfigError("no LMM is configured", "set GEOAGENT_LLM_MODEL (and GEOAGENT_LLM_BASE_URL for a local server)")
    from langchain_openai import ChatOpenAI

    api_key = settings.llm_api_key
    if api_key is None and settings.llm_base_url is None:
        raise ConfigError(
            "GEOAGENT_LLM_MODEL is set for the OpenAI API but no API key is configured",
            "set GEOAGENT_LLM_API_KEY, or GEOAGENT_LLM_BASE_URL for a local OpenAI-compatible server",
        )
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=api_key or "not-needed",  # local servers ignore the key but the client wants one
        timeout=settings.llm_timeout_s,
        max_retries=0,
        temperature=settings.llm_temperature,
    )


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
                        label: str = "lmm") -> tuple[Any, list[dict[str, Any]]]:
    """Call ``model.invoke(messages)``; retry transient failures ``retries`` times with exponential
    backoff. Return ``(reply, trace entries)``; raise LLMFailure (with the entries attached)."""
    entries: list[dict[str, Any]] = []
    for attempt in range(retries + 1):
        start = time.perf_counter()
        try:
            reply = model.invoke(messages)
        except Exception as exc:
            latency = (time.perf_counter() - start) * 1000
            entries.append({"tool": label, "args": {"attempt": attempt + 1}, "summary": "call failed",
                            "latency_ms": round(latency, 3), "error": f"{type(exc).__name__}: {exc}"[:300]})
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
        entries.append({"tool": label, "args": {"attempt": attempt + 1},
                        "summary": f"tool calls: {', '.join(calls)}" if calls else "answered",
                        "latency_ms": round(latency, 3), "tokens": usage_of(reply)})
        return reply, entries
    raise AssertionError("unreachable")
