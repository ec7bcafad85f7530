"""The LMM loop: the model calls the tools itself until it submits its answer.

observe -> brief -> reason <-> tools -> gather -> reason ... -> check_answer -> name_place -> decide
a follow-up question on the thread: START -> follow_up -> reason <-> tools ... -> END (a text reply),
or -> check_answer -> name_place -> decide when the model submits a new answer.

* Protocol: every tool call of an assistant message is answered by exactly one tool message: the
  tool's result (``tools``, one task per call), or an error ``reason`` writes itself: arguments that
  are not valid JSON (the parse problem named), a ``submit_answer`` whose arguments do not validate
  (the problems named), calls that cannot run (the budget is used up, the answer was submitted).
* The answer is structured: the ``submit_answer`` tool's arguments, validated by pydantic.
* Budget: ``steps`` counts the replies with tool calls (invalid ones included) and a first reply
  that only notes what the photo shows (accepted once, without a repair). Once it reaches
  ``max_steps`` only ``submit_answer`` is offered. A reply that should answer and does not (text only,
  an invalid ``submit_answer``, other calls when the answer is due) gets one repair round; the next
  such reply sends the run to the fallback (options -> verify -> choose). So a run that never answers
  makes at most max_steps + 2 requests. An LMM failure (retries spent, the circuit breaker open, the
  photo's limits used up) takes the policy's steps (inspect -> options -> verify -> choose).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.graphs.answer_check import check_answer
from agent.graphs.conversation import (FOLLOW_UP, follow_up, gather, make_tool_node, photo_note, route_start,
                                       send_tool_calls, tool_reply)
from agent.graphs.policy import add_ending, add_policy_steps
from agent.graphs.steps import emit, make_observe, route_after_observe
from agent.lmm.answer import SUBMIT_ANSWER, FinalAnswer, InvalidAnswer, message_text, submit_answer_tool, validate_args
from agent.lmm.calls import LLMFailure, call_lmm
from agent.lmm.images import image_content_block, with_photo
from agent.prediction import Evidence
from agent.prompts import render
from agent.state import AgentState, Answer, observations

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
    return {"steps": 0, "repairs": 0, "turn": "analysis", "messages": [
        SystemMessage(render("system", max_steps=ctx.settings.max_steps, photo_note=photo_note(ctx))),
        HumanMessage(text + "\n\n" + render("final_answer")),
    ]}


def _failure_warning(exc: LLMFailure) -> str:
    if exc.kind == "breaker":
        return f"the LMM was skipped ({exc}); fell back to the no-LMM policy"
    if exc.kind == "limit":
        return f"{exc}; fell back to the no-LMM policy"
    return f"the LMM failed ({exc}); fell back to the no-LMM policy"


def reason(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One LMM request, and what its reply means: tools to run, an answer, a repair or a fallback."""
    ctx = runtime.context
    follow = state.get("turn") == FOLLOW_UP
    steps, repairs = state.get("steps", 0), state.get("repairs", 0)
    must_answer = steps >= ctx.settings.max_steps
    pre: list[Any] = []
    if must_answer and not state.get("budget_exhausted"):
        pre = [HumanMessage(render("budget_exhausted_follow_up" if follow else "budget_exhausted"))]
    model = ctx.models.get("answer" if must_answer else "loop")
    if model is None:  # a context built without the agent's bound models
        model = ctx.chat_model.bind_tools([submit_answer_tool()] if must_answer else [*ctx.tools.values(), submit_answer_tool()])
    block = image_content_block(ctx.image.path, max_side=ctx.settings.llm_image_max_side)
    sent = with_photo([*(state.get("messages") or []), *pre], block, resend=ctx.settings.llm_resend_photo,
                      new_turn=follow and steps == 0 and repairs == 0)
    try:
        result = call_lmm(model, sent, ctx.policy, spent=state.get("usage"))
    except LLMFailure as exc:
        for e in exc.entries:
            emit(runtime, {"type": "tool", **e.model_dump()})
        update: dict[str, Any] = {"trace": exc.entries, "usage": exc.usage}
        if follow:
            return {**update, "loop_next": "end", "reply_error": str(exc)}
        log.warning(_failure_warning(exc))
        return {**update, "llm_failed": True, "loop_next": "failed", "warnings": [_failure_warning(exc)]}
    for e in result.entries:
        emit(runtime, {"type": "tool", **e.model_dump()})
    reply: AIMessage = result.reply
    update = {"trace": result.entries, "usage": result.usage}
    if pre:
        update["budget_exhausted"] = True
    answers, final, problem = _answer_calls(reply, must_answer)
    calls, invalid = reply.tool_calls or [], reply.invalid_tool_calls or []
    if calls or invalid:
        update["steps"] = steps + 1
    messages: list[Any] = [*pre, reply, *answers]
    if final is not None:
        alternatives = final.alternative_candidates()
        update["answer"] = Answer(lat=final.lat, lon=final.lon, confidence=final.confidence, source="lmm",
                                  rationale=final.rationale, alternatives=alternatives, place=final.named_place())
        update["evidence"] = [Evidence(kind="lmm", detail=final.rationale, lat=final.lat, lon=final.lon, weight=final.confidence)]
        return {**update, "messages": messages, "loop_next": "answer"}
    unanswered = len(calls) + len(invalid) - len(answers)
    if follow and not calls and not invalid:
        return {**update, "messages": messages, "loop_next": "end"}  # the text reply to the question
    if not calls and not invalid and steps == 0 and repairs == 0 and not must_answer and message_text(reply.content).strip():
        # the first reply: the model's notes on the photo (the prompt asks for them); it costs a step
        return {**update, "steps": 1, "messages": [*messages, HumanMessage(render("notes_received"))], "loop_next": "reason"}
    if problem is None and not calls and not invalid:
        problem = "the reply did not call submit_answer"
    if problem is None:
        return {**update, "messages": messages, "loop_next": "tools" if unanswered else "gather"}
    if repairs >= MAX_REPAIRS:  # the repair round is spent: whatever is still pending does not run
        ai_calls = {a.tool_call_id for a in answers}
        messages += [tool_reply(c["id"], c["name"], "not run: the loop ended without a valid answer")
                     for c in calls if c["id"] not in ai_calls]
        if follow:
            return {**update, "messages": messages, "loop_next": "end", "reply_error": f"no valid answer ({problem})"}
        return {**update, "messages": messages, "repairs": repairs + 1, "wants_fallback": True, "loop_next": "fallback",
                "warnings": [f"malformed final answer after repair ({problem}); using the best verified candidate"]}
    update["repairs"] = repairs + 1
    update["warnings"] = [f"malformed final answer ({problem}); asked the LMM to repair it"]
    if not calls and not invalid:  # a text reply: ask again in a user message
        return {**update, "messages": [*messages, HumanMessage(render("repair", problem=problem))], "loop_next": "reason"}
    return {**update, "messages": messages, "loop_next": "tools" if unanswered else "gather"}


def _answer_calls(reply: AIMessage, must_answer: bool) -> tuple[list[ToolMessage], FinalAnswer | None, str | None]:
    """The tool messages ``reason`` writes itself for ``reply``'s calls, the valid final answer if
    one was submitted, and the problem of a failed answer (None when there is none)."""
    answers: list[ToolMessage] = []
    final: FinalAnswer | None = None
    problem: str | None = None
    for bad in reply.invalid_tool_calls or []:
        why = (f"the arguments of {bad.get('name') or 'this call'} are not valid JSON ({parse_problem(bad)}); "
               "call it again with a JSON object")
        answers.append(tool_reply(bad.get("id") or "", bad.get("name") or "invalid", why))
        if bad.get("name") == SUBMIT_ANSWER:
            problem = why
    calls = reply.tool_calls or []
    for call in (c for c in calls if c["name"] == SUBMIT_ANSWER):
        if final is not None:
            answers.append(tool_reply(call["id"], SUBMIT_ANSWER, "ignored: an answer was already submitted in this reply"))
            continue
        try:
            final = validate_args(FinalAnswer, call["args"])
            answers.append(tool_reply(call["id"], SUBMIT_ANSWER, "answer received", error=False))
        except InvalidAnswer as exc:
            problem = f"invalid submit_answer arguments: {exc}"
            answers.append(tool_reply(call["id"], SUBMIT_ANSWER, f"{problem}. Call submit_answer again with corrected arguments."))
    others = [c for c in calls if c["name"] != SUBMIT_ANSWER]
    if final is not None:
        return [*answers, *(tool_reply(c["id"], c["name"], "not run: the answer was submitted") for c in others)], final, None
    if must_answer:  # only submit_answer may come now: anything else is a failed answer
        answers += [tool_reply(c["id"], c["name"], "not run: the step budget is used up; call submit_answer now") for c in others]
        if others or reply.invalid_tool_calls:
            problem = problem or "tools were called after the step budget was used up"
    return answers, None, problem


def parse_problem(bad: dict[str, Any]) -> str:
    """What was wrong with an invalid call's arguments, in one line (the JSON parser's message)."""
    error = str(bad.get("error") or "unparseable")
    for line in error.splitlines():
        if "JSONDecodeError" in line or "Expecting" in line:
            return line.strip().removeprefix("Received ")[:200]
    return error.splitlines()[0][:200] if error.strip() else "unparseable"


NEXT = {"answer": "check_answer", "fallback": "options", "failed": "inspect", "gather": "gather", "reason": "reason", "end": END}


def route_after_reason(state: AgentState) -> Any:
    nxt = state.get("loop_next") or "fallback"
    if nxt == "tools":
        return send_tool_calls(state)
    return NEXT[nxt]


def add_loop(graph: StateGraph, tools: list[Any]) -> None:
    """The LMM loop's nodes (reason, tools, gather) and the follow-up entry, on ``graph`` that already
    has the policy's steps and the ending."""
    graph.add_node("reason", reason)
    graph.add_node("tools", make_tool_node(tools))
    graph.add_node("gather", gather)
    graph.add_node(FOLLOW_UP, follow_up)
    graph.add_node("check_answer", check_answer)
    graph.add_edge("check_answer", "name_place")
    graph.add_conditional_edges("reason", route_after_reason, ["tools", *NEXT.values()])
    graph.add_edge("tools", "gather")
    graph.add_edge("gather", "reason")
    graph.add_edge(FOLLOW_UP, "reason")


def build_agent_graph(tools: list[Any], checkpointer: Any = None) -> Any:
    graph = StateGraph(AgentState, context_schema=RunContext)
    graph.add_node("observe", make_observe())
    graph.add_node("brief", brief)
    add_policy_steps(graph)
    add_ending(graph)
    add_loop(graph, tools)
    graph.add_conditional_edges(START, route_start("observe"), ["observe", FOLLOW_UP])
    graph.add_conditional_edges("observe", route_after_observe("brief", needs_candidates=False), ["brief", "name_place"])
    graph.add_edge("brief", "reason")
    return graph.compile(checkpointer=checkpointer, name="geoagent-agent")
