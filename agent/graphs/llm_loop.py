"""The LMM loop: the model calls the tools itself until it submits its answer.

observe -> brief -> reason <-> tools -> reason ... -> check_answer -> name_place -> decide

The first prompt (``brief``) carries the evidence rag's prompts carry: the image database's similar
photos in re-rank order and its dissimilar ones, the GPS gallery's candidates and the clusters
(``agent.graphs.neighbours``).
a follow-up question on the thread (``GeoAgent.stream({"question": ...})`` enters at ``follow_up``):
follow_up -> reason <-> tools ... -> END (a text reply), or -> check_answer -> name_place -> decide
when the model submits a new answer.

* ``reason`` makes one LMM request; ``classify`` (``agent.graphs.classify``, a pure function)
  decides what the reply means and ``reason`` returns it as a ``Command`` to the next node. An LMM
  failure (retries spent, the circuit breaker open, the photo's limits used up) goes to the
  policy's steps (inspect -> options -> verify -> choose), or ends a follow-up with the error.
* ``tools`` runs the reply's pending calls through the run's ToolNode and folds every result of
  the turn into the state (``agent.toolbox``), then goes back to ``reason``.
* Budget (``state["loop"]``): ``steps`` counts the replies with tool calls (invalid ones included)
  and a first reply that only notes what the photo shows (accepted once). Once it reaches
  ``max_steps`` only ``submit_answer`` is offered. A reply that should answer and does not gets one
  repair round; the next sends the run to the fallback. So a run that never answers makes at most
  max_steps + 2 requests.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agent.context import RunContext
from agent.decision.rules import pool_name
from agent.graphs.answer_check import check_answer
from agent.graphs.classify import Budget, Outcome, classify
from agent.graphs.follow_up import FOLLOW_UP, follow_up, photo_note
from agent.graphs.neighbours import Neighbours, neighbours_of, render_neighbours
from agent.graphs.policy import Graph, add_ending, add_policy_steps
from agent.graphs.steps import make_observe, route_after_observe
from agent.lmm.answer import submit_answer_tool
from agent.lmm.calls import LLMFailure, call_lmm
from agent.lmm.images import image_content_block, with_photo
from agent.prediction import Evidence
from agent.prompts import render
from agent.state import AgentState, Answer, Loop, observations
from agent.toolbox import emit, fold, pending_calls, result_of, run_tools, turn_messages

log = logging.getLogger(__name__)

FIRST_NEIGHBOURS = 10
"""Similar, dissimilar and gallery neighbours the first prompt shows (each list)."""
GRAPH_STEPS_PER_ROUND = 2  # reason, tools
FIXED_GRAPH_STEPS = 20  # observe, brief, repair and budget rounds, the fallback path, name_place, decide

ReasonNext = Literal["check_answer", "tools", "reason", "options", "inspect", "__end__"]


def recursion_limit(max_steps: int) -> int:
    """LangGraph's recursion limit for a run: larger than any path the step budget allows."""
    return GRAPH_STEPS_PER_ROUND * max_steps + FIXED_GRAPH_STEPS


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":")) if value else "none"


def _clusters_line(nb: Neighbours) -> tuple[str, str, str, str]:
    """(what was clustered, the clusters, what the re-rank answered, that answer) for the first prompt."""
    result = nb.clustering
    if result is None or not result.candidates:
        return "retrieval candidates", "none", "best single candidate", "none"
    clusters = [
        [round(c.lat, 4), round(c.lon, 4), c.support, round(c.score_mass, 3), round(c.radius_km, 1)] for c in result.clusters[:5]
    ]
    if not result.clusters:
        kind = "best single candidate: no cluster formed"
    elif result.weighting == "none":
        kind = "real candidate nearest the main cluster's mean"
    else:
        kind = "score-weighted centre of the main cluster"
    best = _compact([round(result.best.lat, 4), round(result.best.lon, 4)])
    return pool_name(result.candidates), _compact(clusters), kind, best


def brief(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The system prompt and the first user message: what observe found (the database's similar
    photos in re-rank order and its dissimilar ones, the GPS gallery's candidates, the clusters)."""
    ctx = runtime.context
    obs = observations(state)
    nb = neighbours_of(state)
    exif = obs.exif.model_dump(exclude_none=True) if obs.exif else None
    clustered, clusters, answer_kind, best = _clusters_line(nb)
    text = render(
        "observe",
        exif=_compact(exif),
        neighbours=render_neighbours("observe_database", "observe_no_database", nb, FIRST_NEIGHBOURS),
        clustered=clustered,
        clusters=clusters,
        answer_kind=answer_kind,
        best=best,
    )
    return {
        "loop": Loop(),
        "messages": [
            SystemMessage(render("system", max_steps=ctx.settings.max_steps, photo_note=photo_note(ctx))),
            HumanMessage(text + "\n\n" + render("final_answer")),
        ],
    }


def _failure_warning(exc: LLMFailure) -> str:
    if exc.kind == "breaker":
        return f"the LMM was skipped ({exc}); fell back to the no-LMM policy"
    if exc.kind == "limit":
        return f"{exc}; fell back to the no-LMM policy"
    return f"the LMM failed ({exc}); fell back to the no-LMM policy"


def _request(state: AgentState, ctx: RunContext, loop: Loop, must_answer: bool) -> tuple[list[Any], Any]:
    """The messages to send (with the budget notice when the steps were just spent) and the model."""
    pre = (
        []
        if not must_answer or loop.warned
        else [HumanMessage(render("budget_exhausted_follow_up" if loop.turn == FOLLOW_UP else "budget_exhausted"))]
    )
    model = ctx.models.get("answer" if must_answer else "loop")
    if model is None:  # a context built without the agent's bound models
        model = ctx.chat_model.bind_tools([submit_answer_tool()] if must_answer else [*ctx.tools.values(), submit_answer_tool()])
    return pre, model


def _command(outcome: Outcome, reply: AIMessage, pre: list[Any], update: dict[str, Any]) -> Command[ReasonNext]:
    """The Command a classified reply becomes."""
    messages: list[Any] = [*pre, reply, *outcome.replies]
    update = {**update, "loop": outcome.loop}
    if outcome.kind == "answer" and outcome.final is not None:
        final = outcome.final
        update["answer"] = Answer(
            lat=final.lat,
            lon=final.lon,
            confidence=final.confidence,
            source="lmm",
            rationale=final.rationale,
            alternatives=final.alternative_options(),
            place=final.named_place(),
        )
        update["evidence"] = [Evidence(kind="lmm", detail=final.rationale, lat=final.lat, lon=final.lon, weight=final.confidence)]
    elif outcome.kind == "notes":
        messages.append(HumanMessage(render("notes_received")))
    elif outcome.kind == "repair":
        update["warnings"] = [f"malformed final answer ({outcome.problem}); asked the LMM to repair it"]
        if outcome.next == "reason":  # a text reply: ask again in a user message
            messages.append(HumanMessage(render("repair", problem=outcome.problem)))
    elif outcome.kind == "fallback":
        update["warnings"] = [f"malformed final answer after repair ({outcome.problem}); using the best verified candidate"]
    elif outcome.kind == "give_up":
        update["reply_error"] = f"no valid answer ({outcome.problem})"
    return Command(goto=outcome.next, update={**update, "messages": messages})


def reason(state: AgentState, runtime: Runtime[RunContext]) -> Command[ReasonNext]:
    """One LMM request; ``classify`` says what its reply means and where the loop goes next."""
    ctx = runtime.context
    loop = state.get("loop") or Loop()
    budget = Budget(loop, ctx.settings.max_steps)
    pre, model = _request(state, ctx, loop, budget.must_answer)
    block = image_content_block(ctx.photo, max_side=ctx.settings.llm_image_max_side)
    sent = with_photo(
        [*(state.get("messages") or []), *pre],
        block,
        resend=ctx.settings.llm_resend_photo,
        new_turn=loop.turn == FOLLOW_UP and loop.steps == 0 and loop.repairs == 0,
    )
    try:
        result = call_lmm(model, sent, ctx.policy, spent=state.get("usage"))
    except LLMFailure as exc:
        for e in exc.entries:
            emit(runtime, {"type": "tool", **e.model_dump()})
        update: dict[str, Any] = {"trace": exc.entries, "usage": exc.usage}
        if loop.turn == FOLLOW_UP:
            return Command(goto="__end__", update={**update, "reply_error": str(exc)})  # END
        log.warning(_failure_warning(exc))
        return Command(goto="inspect", update={**update, "llm_failed": True, "warnings": [_failure_warning(exc)]})
    for e in result.entries:
        emit(runtime, {"type": "tool", **e.model_dump()})
    if pre:
        budget = Budget(loop.model_copy(update={"warned": True}), ctx.settings.max_steps)
    outcome = classify(result.reply, budget)
    return _command(outcome, result.reply, pre, {"trace": result.entries, "usage": result.usage})


def tools(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run the last reply's pending calls through the ToolNode and fold every result of the turn
    (the loop's own answers to invalid calls included) into the state."""
    messages = state.get("messages") or []
    ran = run_tools(runtime, pending_calls(messages))
    ai, answered = turn_messages([*messages, *ran])
    calls: dict[str | None, dict[str, Any]] = {c["id"]: dict(c) for c in (ai.tool_calls if ai else [])}
    for bad in ai.invalid_tool_calls if ai else []:  # answered by reason: in the trace as called
        raw = {"raw_arguments": str(bad.get("args") or "")[:200]}
        calls.setdefault(bad.get("id"), {"name": bad.get("name") or "?", "args": raw})
    results = [
        result_of(runtime.context.tools, calls.get(msg.tool_call_id) or {"name": msg.name or "?", "args": {}}, msg)
        for msg in answered
    ]
    return {**fold(runtime, results), "messages": ran}


def add_loop(graph: Graph) -> None:
    """The LMM loop's nodes (reason, tools) and the follow-up entry, on ``graph`` that already has
    the policy's steps and the ending."""
    graph.add_node("reason", reason)
    graph.add_node("tools", tools)
    graph.add_node(FOLLOW_UP, follow_up)
    graph.add_node("check_answer", check_answer)
    graph.add_edge("check_answer", "name_place")
    graph.add_edge("tools", "reason")
    graph.add_edge(FOLLOW_UP, "reason")


def build_agent_graph(checkpointer: Any = None) -> Any:
    graph = StateGraph(AgentState, context_schema=RunContext)
    graph.add_node("observe", make_observe(dissimilar=FIRST_NEIGHBOURS))
    graph.add_node("brief", brief)
    add_policy_steps(graph)
    add_ending(graph)
    add_loop(graph)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", route_after_observe("brief", needs_candidates=False), ["brief", "name_place"])
    graph.add_edge("brief", "reason")
    return graph.compile(checkpointer=checkpointer, name="geoagent-agent")
