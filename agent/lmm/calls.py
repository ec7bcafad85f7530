"""Calling the LMM: one logical request through the retries, the shared circuit breaker and the
per-photo limits, with a trace entry per attempt and the usage they add up to.

The per-photo deadline (``llm_deadline_s``) is wall-clock time on the LMM for the whole photo,
retries and their waits included: a request still unanswered when it passes is abandoned (it runs
out on its own thread until the client's timeout), no retry starts after it, and the graphs' no-LMM
policy answers with a warning. A run's cancellation (``agent.cancel``) is watched while a request
waits, so a hung endpoint never holds a run nobody waits for.

Retries are tenacity's: exponential waits with jitter, or the server's ``Retry-After`` /
``retry-after-ms`` when it sends one (capped by ``llm_retry_max_s``). Transient failures are
retried: timeouts, dropped connections, HTTP 408/409/429/5xx and a garbage HTTP 200 body. The SDK's
own retries stay off (``max_retries=0`` in the factory) so that every request the endpoint sees
passes the breaker and the limits and shows in the trace.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from agent.cancel import current_cancellation
from agent.lmm.breaker import CircuitBreaker
from agent.prediction import TraceEntry, Usage
from retrieval_service.core.cancel import Cancellation, Cancelled

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429})
FailureKind = Literal["error", "breaker", "limit"]


class LLMFailure(RuntimeError):
    """The chat model could not answer: it failed for good (``kind="error"``), the circuit breaker
    refused the request (``"breaker"``) or the photo's LMM limits are used up (``"limit"``)."""

    def __init__(
        self, message: str, *, kind: FailureKind = "error", entries: Sequence[TraceEntry] = (), usage: Usage | None = None
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.entries: list[TraceEntry] = list(entries)
        self.usage: Usage = usage or Usage()


@dataclass(frozen=True)
class CallPolicy:
    """How LMM requests are made: retries and waits, the shared breaker, the per-photo limits."""

    retries: int = 2
    initial_s: float = 1.0
    max_wait_s: float = 30.0
    breaker: CircuitBreaker | None = None
    max_calls: int | None = None
    max_tokens: int | None = None
    deadline_s: float | None = None  # the photo's wall-clock time on the LMM, retries included
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def from_settings(cls, settings: Any, breaker: CircuitBreaker | None = None, **overrides: Any) -> CallPolicy:
        values = {
            "retries": settings.llm_max_retries,
            "initial_s": settings.llm_retry_initial_s,
            "max_wait_s": settings.llm_retry_max_s,
            "breaker": breaker,
            "max_calls": settings.llm_max_calls_per_photo,
            "max_tokens": settings.llm_max_tokens_per_photo,
            "deadline_s": getattr(settings, "llm_deadline_s", None) or None,
        }
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class CallResult:
    reply: Any
    entries: list[TraceEntry]
    usage: Usage


def usage_of(message: Any) -> dict[str, int] | None:
    """A reply's token usage as ``{input_tokens, output_tokens, total_tokens}`` (None when unreported)."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    return {k: int(usage.get(k, 0) or 0) for k in ("input_tokens", "output_tokens", "total_tokens")}


def add_usage(a: Usage | None, b: Usage | None, *more: Usage) -> Usage:
    """The sum of usages (also the state reducer of ``usage``)."""
    out = a or Usage()
    for u in (b, *more):
        u = u or Usage()
        out = Usage(
            calls=out.calls + u.calls,
            input_tokens=out.input_tokens + u.input_tokens,
            output_tokens=out.output_tokens + u.output_tokens,
            seconds=round(out.seconds + u.seconds, 6),
        )
    return out


def retry_after_s(exc: BaseException | None) -> float | None:
    """The wait a failed response asks for (``retry-after-ms``, ``retry-after`` seconds or HTTP date)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return float(ms) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError):
        return None


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed request may succeed when sent again."""
    if isinstance(exc, LLMFailure):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, json.JSONDecodeError)):
        return True  # json: an HTTP 200 whose body is not JSON
    if isinstance(exc, (TypeError, KeyError)) and "choices" in str(exc):
        return True  # an HTTP 200 JSON body without the completion (langchain-openai's "null value for 'choices'")
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover - httpx is a dependency
        pass
    try:
        import openai

        if isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError)):
            return True  # dropped/timed-out connections, a garbage HTTP 200 body
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        pass
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in RETRY_STATUS or status >= 500)


class wait_retry_after(wait_base):
    """The server's Retry-After when it sent one, else ``fallback``; never more than ``cap`` seconds,
    nor than what ``budget()`` says is left (the photo's LMM deadline)."""

    def __init__(self, fallback: wait_base, cap: float, budget: Callable[[], float | None] | None = None) -> None:
        self.fallback = fallback
        self.cap = cap
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        hinted = retry_after_s(exc)
        wait = hinted if hinted is not None else self.fallback(retry_state)
        left = self.budget() if self.budget is not None else None
        return max(0.0, min(wait, self.cap, left if left is not None else wait))


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class DeadlinePassed(TimeoutError):
    """No reply before the photo's LMM deadline."""


def _deadline_failure(policy: CallPolicy) -> LLMFailure:
    return LLMFailure(f"the per-photo LMM deadline of {policy.deadline_s:g} s is spent", kind="limit")


def _invoke(model: Any, messages: list[Any], left_s: float | None, token: Cancellation | None) -> Any:
    """``model.invoke(messages)``; with a deadline or a cancellation the request runs on its own
    thread (in this context, so callbacks and streaming work) and is abandoned when ``left_s``
    passes (DeadlinePassed) or ``token`` is set (Cancelled)."""
    if left_s is None and token is None:
        return model.invoke(messages)
    box: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()

    def request() -> None:
        try:
            box["reply"] = context.run(model.invoke, messages)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=request, name="geoagent-lmm-request", daemon=True).start()
    until = None if left_s is None else time.perf_counter() + left_s
    while not done.wait(0.1 if token is not None or until is None else max(0.0, until - time.perf_counter())):
        if token is not None:
            token.check()
        if until is not None and time.perf_counter() >= until:
            raise DeadlinePassed("no reply before the photo's LMM deadline")
    if "error" in box:
        raise box["error"]
    return box["reply"]


def _refusal(policy: CallPolicy, spent: Usage) -> LLMFailure | None:
    if policy.deadline_s is not None and spent.seconds >= policy.deadline_s:
        return _deadline_failure(policy)
    if policy.max_calls is not None and spent.calls >= policy.max_calls:
        return LLMFailure(f"the per-photo limit of {policy.max_calls} LMM requests is used up", kind="limit")
    if policy.max_tokens is not None and spent.input_tokens + spent.output_tokens >= policy.max_tokens:
        return LLMFailure(f"the per-photo limit of {policy.max_tokens} LMM tokens is used up", kind="limit")
    if policy.breaker is not None and not policy.breaker.allow():
        return LLMFailure(policy.breaker.describe(), kind="breaker")
    return None


def call_lmm(
    model: Any, messages: list[Any], policy: CallPolicy, *, spent: Usage | None = None, label: str = "lmm"
) -> CallResult:
    """Send ``messages`` to ``model`` (retrying transient failures); ``spent`` is what this photo has
    used before (for the limits). Raises LLMFailure carrying the attempts' entries and usage."""
    spent = spent or Usage()
    entries: list[TraceEntry] = []
    usage = Usage()
    started = time.perf_counter()
    token = current_cancellation()

    def left_s() -> float | None:
        if policy.deadline_s is None:
            return None
        return policy.deadline_s - spent.seconds - (time.perf_counter() - started)

    def attempt() -> Any:
        nonlocal usage
        if token is not None:
            token.check()
        refusal = _refusal(policy, add_usage(spent, usage, Usage(seconds=time.perf_counter() - started)))
        if refusal is not None:
            raise refusal
        t0 = time.perf_counter()
        try:
            reply = _invoke(model, messages, left_s(), token)
        except Cancelled:
            raise
        except Exception as exc:
            ms = (time.perf_counter() - t0) * 1000
            usage = add_usage(usage, Usage(calls=1))
            entries.append(
                TraceEntry(
                    tool=label,
                    args={"attempt": len(entries) + 1},
                    summary="request failed",
                    latency_ms=round(ms, 3),
                    error=_error_text(exc),
                )
            )
            if policy.breaker is not None:
                policy.breaker.failure(_error_text(exc))
            raise
        ms = (time.perf_counter() - t0) * 1000
        if policy.breaker is not None:
            policy.breaker.success()
        tokens = usage_of(reply)
        usage = add_usage(
            usage,
            Usage(
                calls=1, input_tokens=(tokens or {}).get("input_tokens", 0), output_tokens=(tokens or {}).get("output_tokens", 0)
            ),
        )
        calls = [c["name"] for c in getattr(reply, "tool_calls", None) or []]
        bad = [c.get("name") or "?" for c in getattr(reply, "invalid_tool_calls", None) or []]
        summary = (f"tool calls: {', '.join(calls)}" if calls else "answered") + (
            f"; invalid calls: {', '.join(bad)}" if bad else ""
        )
        entries.append(
            TraceEntry(tool=label, args={"attempt": len(entries) + 1}, summary=summary, latency_ms=round(ms, 3), tokens=tokens)
        )
        return reply

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "LMM request failed (%s); retry %d/%d in %.2f s",
            exc,
            state.attempt_number,
            policy.retries,
            state.next_action.sleep if state.next_action else 0.0,
        )

    def sleep(seconds: float) -> None:
        if token is not None and policy.sleep is time.sleep:
            token.wait(seconds)
            token.check()
        else:
            policy.sleep(seconds)

    retrying = Retrying(
        stop=stop_after_attempt(policy.retries + 1),
        wait=wait_retry_after(
            wait_exponential_jitter(initial=policy.initial_s, max=policy.max_wait_s, jitter=policy.initial_s),
            cap=policy.max_wait_s,
            budget=left_s,
        ),
        retry=retry_if_exception(is_retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        reply = retrying(attempt)
    except Cancelled:
        raise
    except DeadlinePassed as exc:
        usage = add_usage(usage, Usage(seconds=time.perf_counter() - started))
        raise LLMFailure(str(_deadline_failure(policy)), kind="limit", entries=entries, usage=usage) from exc
    except LLMFailure as exc:
        usage = add_usage(usage, Usage(seconds=time.perf_counter() - started))
        raise LLMFailure(str(exc), kind=exc.kind, entries=entries, usage=usage) from exc
    except Exception as exc:
        usage = add_usage(usage, Usage(seconds=time.perf_counter() - started))
        tries = f" after {len(entries)} attempts" if len(entries) > 1 else ""
        raise LLMFailure(f"{_error_text(exc)}{tries}", entries=entries, usage=usage) from exc
    usage = add_usage(usage, Usage(seconds=time.perf_counter() - started))
    return CallResult(reply=reply, entries=entries, usage=usage)
