"""The conversation machinery the LMM graphs share: running the model's tool calls (one ``Send`` per
call to a ToolNode that injects the photo), folding their results into the state (``gather``), and
follow-up questions on a thread that already holds an analysis (``follow_up``).

A thread holds one photo. A follow-up question enters the same graph at ``follow_up`` (START routes
there when the input says ``turn="follow_up"``) and runs the LMM loop again with the tools and the
photo; the reply is the last assistant message, and a new ``submit_answer`` re-decides the Prediction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, SystemMessage, ToolMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime
from langgraph.types import Send

from agent.context import RunContext
from agent.graphs.steps import absorb, emit
from agent.lmm.answer import message_text
from agent.prediction import Prediction
from agent.prompts import render
from agent.state import AgentState, merge_observations
from agent.tool_calls import tool_message_content, trace_entry

FOLLOW_UP = "follow_up"


def tool_reply(call_id: str, name: str, text: str, *, error: bool = True) -> ToolMessage:
    """The tool message answering one call that the graph answers itself (an error, or a receipt)."""
    content = json.dumps({"error": text}) if error else text
    return ToolMessage(content=content, tool_call_id=call_id, name=name, status="error" if error else "success")


def turn_messages(messages: list[Any]) -> tuple[AIMessage | None, list[ToolMessage]]:
    """The last assistant message and the tool messages after it."""
    after: list[ToolMessage] = []
    for msg in reversed(messages):
        if isinstance(msg, ToolMessage):
            after.append(msg)
        elif isinstance(msg, AIMessage):
            return msg, list(reversed(after))
        else:
            after = []
    return None, []


def pending_calls(messages: list[Any]) -> list[dict[str, Any]]:
    """The last assistant message's tool calls that no tool message answers yet."""
    ai, answered = turn_messages(messages)
    if ai is None:
        return []
    done = {m.tool_call_id for m in answered}
    return [c for c in ai.tool_calls or [] if c.get("id") not in done]


def send_tool_calls(state: dict[str, Any]) -> list[Send]:
    """One ToolNode task per pending call (they run in parallel, in one step)."""
    return [Send("tools", {"__type": "tool_call_with_context", "tool_call": {**call, "type": "tool_call"}, "state": state})
            for call in pending_calls(state.get("messages") or [])]


def _announce_and_time(request: Any, execute: Callable[[Any], Any]) -> Any:
    """ToolNode interceptor: announce the call live and time it. (The photo reaches the tools as
    their injected ``image`` argument, from the state's ``image_path``: the model never sees it.)"""
    writer = getattr(request.runtime, "stream_writer", None)
    if writer is not None:
        writer({"type": "tool_start", "tool": request.tool_call["name"]})
    start = time.perf_counter()
    out = execute(request)
    if isinstance(out, ToolMessage):
        out.response_metadata = {**(out.response_metadata or {}), "latency_ms": (time.perf_counter() - start) * 1000}
    return out


def make_tool_node(tools: list[Any]) -> ToolNode:
    return ToolNode(list(tools), handle_tool_errors=True, wrap_tool_call=_announce_and_time)


def gather(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Fold the latest tool results (and the errors answering invalid calls) into the candidates,
    the observations and the trace."""
    ai, answered = turn_messages(state.get("messages") or [])
    calls = {c["id"]: c for c in (ai.tool_calls if ai else [])}
    invalid = {c.get("id"): c for c in (ai.invalid_tool_calls if ai else [])}
    trace, candidates, obs = [], [], None
    for msg in answered:
        call = calls.get(msg.tool_call_id)
        if call is None:
            bad = invalid.get(msg.tool_call_id) or {}
            call = {"name": msg.name or bad.get("name") or "?", "args": {"raw_arguments": str(bad.get("args") or "")[:200]}}
        content = tool_message_content(msg)
        entry = trace_entry(call["name"], call.get("args") or {}, content,
                            float((msg.response_metadata or {}).get("latency_ms", 0.0)))
        trace.append(entry)
        emit(runtime, {"type": "tool", **entry.model_dump()})
        if "error" in content:
            continue
        update = absorb(call["name"], msg.artifact)
        candidates += update.get("candidates", [])
        if "obs" in update:
            obs = merge_observations(obs, update["obs"])
    out: dict[str, Any] = {"trace": trace, "candidates": candidates}
    if obs is not None:
        out["obs"] = obs
    return out


def analysis_brief(prediction: Prediction | None) -> str:
    """An analysis in a few lines, for a conversation that has to start from it."""
    if prediction is None:
        return "no analysis"
    lines = [f"answer {prediction.lat:.5f}, {prediction.lon:.5f} near {prediction.place.label('an unnamed place')} "
             f"(confidence {prediction.confidence:.2f}, source {prediction.source}, mode {prediction.mode})",
             f"rationale: {prediction.rationale}"]
    lines += [f"alternative: {a.lat:.4f}, {a.lon:.4f} ({a.source})" for a in prediction.alternatives[:5]]
    lines += [f"evidence ({e.kind}): {e.detail}" for e in prediction.evidence[:12]]
    return "\n".join(lines)


def follow_up(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Start a follow-up turn: a fresh step budget; a thread whose messages are no conversation yet
    (the RAG prompts, a fallback) gets one, seeded with the analysis and ending with the question."""
    ctx = runtime.context
    update: dict[str, Any] = {"steps": 0, "repairs": 0, "budget_exhausted": False, "wants_fallback": False,
                              "llm_failed": False, "reply_error": None, "loop_next": ""}
    messages = state.get("messages") or []
    question = messages[-1] if messages and isinstance(messages[-1], HumanMessage) else HumanMessage("")
    brief = render("follow_up_brief", analysis=analysis_brief(state.get("prediction")))
    if not messages or not isinstance(messages[0], SystemMessage):
        system = render("system", max_steps=ctx.settings.max_steps, photo_note=photo_note(ctx))
        update["messages"] = [RemoveMessage(id=REMOVE_ALL_MESSAGES), SystemMessage(f"{system}\n\n{brief}"),
                              HumanMessage(question.content, additional_kwargs=question.additional_kwargs)]
    elif (pred := state.get("prediction")) is not None and pred.source != "lmm" and question.id:
        # the conversation did not produce the answer (the LMM failed, the policy or EXIF decided): say what did
        update["messages"] = [HumanMessage(f"{brief}\n\n{message_text(question.content)}", id=question.id,
                                           additional_kwargs=question.additional_kwargs)]
    return update


def photo_note(ctx: RunContext) -> str:
    return render("photo_every_call" if ctx.settings.llm_resend_photo else "photo_once")


def route_start(analysis: str) -> Callable[[dict[str, Any]], str]:
    """START: a follow-up question goes to ``follow_up``, a new photo to ``analysis``."""

    def route(state: dict[str, Any]) -> str:
        return FOLLOW_UP if state.get("turn") == FOLLOW_UP else analysis

    return route
