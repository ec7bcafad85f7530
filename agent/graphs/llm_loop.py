"""The LMM loop: the model calls the tools itself until it commits to an answer.

observe -> brief -> reason <-> tools -> gather -> reason ... -> name_place -> decide

* The step budget is one counter, ``steps`` (tool rounds); when it is used up the model is asked to
  answer with the evidence so far. The recursion limit (``recursion_limit``) is a safety net sized
  so that the counter always ends the loop first.
* When the LMM fails for good the policy's steps decide (inspect -> options -> verify -> choose);
  when its answer stays malformed after one repair, options -> verify -> choose decide.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.graphs.policy import add_ending, add_policy_steps
from agent.graphs.steps import absorb, emit, make_observe, route_after_observe
from agent.lmm.answer import MalformedAnswer, parse_final_answer
from agent.lmm.calls import LLMFailure, invoke_with_retries
from agent.lmm.images import image_content_block
from agent.prediction import Evidence
from agent.prompts import render
from agent.state import AgentState, Answer, merge_observations, observations
from agent.tool_calls import tool_message_content, trace_entry

log = logging.getLogger(__name__)

MAX_REPAIRS = 1
GRAPH_STEPS_PER_ROUND = 3  # reason, tools, gather
FIXED_GRAPH_STEPS = 20  # observe, brief, repair and budget rounds, the fallback path, name_place, decide


def recursion_limit(max_steps: int) -> int:
    """LangGraph's recursion limit for a run: larger than any path the step budget allows."""
    return GRAPH_STEPS_PER_ROUND * max_steps + FIXED_GRAPH_STEPS


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":")) if value else "none"


def brief(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The system prompt and the first user message: what observe found."""
    ctx = runtime.context
    obs = observations(state)
    candidates = state.get("candidates") or []
    clusters = obs.clusters.clusters if obs.clusters else []
    exif = obs.exif.model_dump(exclude_none=True) if obs.exif else None
    text = render("observe", exif=_compact(exif),
                  candidates=_compact([[c.lat, c.lon, round(c.score, 3)] for c in candidates[:10]]),
                  clusters=_compact([[round(c.lat, 4), round(c.lon, 4), c.support, round(c.score_mass, 3), round(c.radius_km, 1)]
                                     for c in clusters[:5]]))
    return {"steps": 0, "repairs": 0, "messages": [
        SystemMessage(render("system", max_steps=ctx.settings.max_steps)),
        HumanMessage(text + "\n\nWhen you are done, reply with your final answer:\n" + render("final_answer")),
    ]}


def _model_input(state: AgentState, ctx: RunContext) -> list[Any]:
    """The conversation with the photo attached to the first user message (never stored in state)."""
    block = image_content_block(ctx.image.path)
    out, attached = [], False
    for msg in state.get("messages") or []:
        if not attached and isinstance(msg, HumanMessage):
            out.append(HumanMessage(content=[{"type": "text", "text": msg.content}, block], id=msg.id))
            attached = True
        else:
            out.append(msg)
    return out


def _unrun(calls: list[dict], why: str) -> list[ToolMessage]:
    return [ToolMessage(content=json.dumps({"error": why}), tool_call_id=c["id"], name=c["name"], status="error")
            for c in calls]


def reason(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    must_answer = bool(state.get("budget_exhausted")) or state.get("repairs", 0) > 0
    model = ctx.chat_model if must_answer else ctx.chat_model.bind_tools(list(ctx.tools.values()))
    try:
        reply, entries = invoke_with_retries(model, _model_input(state, ctx), retries=ctx.settings.llm_max_retries,
                                             backoff_s=ctx.retry_backoff_s)
    except LLMFailure as exc:
        msg = f"the LMM failed ({exc}); fell back to the no-LMM policy"
        log.warning(msg)
        return {"llm_failed": True, "trace": getattr(exc, "entries", []), "warnings": [msg]}
    for e in entries:
        emit(runtime, {"type": "tool", **e.model_dump()})
    update: dict[str, Any] = {"messages": [reply], "trace": entries}
    calls = reply.tool_calls or []
    if calls and not must_answer:
        steps = state.get("steps", 0) + 1
        update["steps"] = steps
        if steps <= ctx.settings.max_steps:
            return update
        update["budget_exhausted"] = True
        update["warnings"] = [f"step budget of {ctx.settings.max_steps} tool rounds used up; answering with the evidence so far"]
        update["messages"] = [reply, *_unrun(calls, "not run: the step budget is used up"),
                              HumanMessage(render("budget_exhausted") + "\n" + render("final_answer"))]
        return update
    if calls:  # tool calls where an answer was demanded
        update["messages"] = [reply, *_unrun(calls, "not run: no more tool calls, answer now")]
    try:
        final = parse_final_answer(reply.content)
    except MalformedAnswer as exc:
        if state.get("repairs", 0) < MAX_REPAIRS:
            update["repairs"] = state.get("repairs", 0) + 1
            update["messages"] = [*update["messages"], HumanMessage(render("repair", problem=str(exc)) + "\n" + render("final_answer"))]
            update["warnings"] = [f"malformed final answer ({exc}); asked the LMM to repair it"]
        else:
            update["warnings"] = [f"malformed final answer after repair ({exc}); using the best verified candidate"]
            update["wants_fallback"] = True
        return update
    alternatives = [a.model_copy(update={"source": "lmm"}) for a in final.alternatives]
    update["answer"] = Answer(lat=final.lat, lon=final.lon, confidence=final.confidence, source="lmm",
                              rationale=final.rationale, alternatives=alternatives, place=final.place)
    update["evidence"] = [Evidence(kind="lmm", detail=final.rationale, lat=final.lat, lon=final.lon, weight=final.confidence)]
    return update


def route_after_reason(state: AgentState) -> str:
    if state.get("llm_failed"):
        return "inspect"
    if state.get("answer") is not None:
        return "name_place"
    if state.get("wants_fallback"):
        return "options"
    last = (state.get("messages") or [None])[-1]
    if isinstance(last, AIMessage) and last.tool_calls:
        return "tools"
    if isinstance(last, HumanMessage):  # a repair or budget request
        return "reason"
    return "options"


def _inject_image(request: Any, execute: Callable[[Any], Any]) -> Any:
    """ToolNode interceptor: hand the tools the real photo and time the call."""
    ctx: RunContext | None = getattr(request.runtime, "context", None)
    call = request.tool_call
    if request.tool is not None and ctx is not None and "image" in (request.tool.args or {}):
        request = request.override(tool_call={**call, "args": {**call["args"], "image": ctx.image.path}})
    start = time.perf_counter()
    out = execute(request)
    if isinstance(out, ToolMessage):
        out.response_metadata = {**(out.response_metadata or {}), "latency_ms": (time.perf_counter() - start) * 1000}
    return out


def gather(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Fold the latest tool results into the candidates, the observations and the trace."""
    messages = state.get("messages") or []
    calls: dict[str, dict] = {}
    new: list[ToolMessage] = []
    for msg in reversed(messages):
        if isinstance(msg, ToolMessage):
            new.append(msg)
        elif isinstance(msg, AIMessage):
            calls = {c["id"]: c for c in msg.tool_calls or []}
            break
    trace, candidates, obs = [], [], None
    for msg in reversed(new):
        call = calls.get(msg.tool_call_id, {"name": msg.name or "?", "args": {}})
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


def build_agent_graph(tools: list[Any], checkpointer: Any = None) -> Any:
    graph = StateGraph(AgentState, context_schema=RunContext)
    graph.add_node("observe", make_observe())
    graph.add_node("brief", brief)
    graph.add_node("reason", reason)
    graph.add_node("tools", ToolNode(list(tools), handle_tool_errors=True, wrap_tool_call=_inject_image))
    graph.add_node("gather", gather)
    add_policy_steps(graph)
    add_ending(graph)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", route_after_observe("brief", needs_candidates=False), ["brief", "name_place"])
    graph.add_edge("brief", "reason")
    graph.add_conditional_edges("reason", route_after_reason, ["inspect", "name_place", "options", "tools", "reason"])
    graph.add_edge("tools", "gather")
    graph.add_edge("gather", "reason")
    return graph.compile(checkpointer=checkpointer, name="geoagent-agent")
