"""The G3 recipe (geo-diversified retrieval-augmented prompting): the LMM proposes coordinates from
prompts with 0/5/10/15 similar and dissimilar neighbours, and image-to-GPS verification picks among
the proposals and the top retrieval candidates. No tool calls by the model.

observe (with dissimilar neighbours) -> propose -> verify -> choose_verified -> name_place -> decide
(every prompt failing -> the policy's steps decide.)
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.decision import rules
from agent.graphs.policy import add_ending, add_policy_steps
from agent.graphs.steps import make_observe, route_after_observe, verify
from agent.lmm.answer import parse_coordinates
from agent.lmm.calls import LLMFailure, invoke_with_retries
from agent.lmm.images import image_content_block
from agent.prediction import Evidence, TraceEntry
from agent.prompts import render
from agent.state import Answer, RagState, observations
from retrieval_service.core.types import Candidate

NEIGHBOURS = (0, 5, 10, 15)
VERIFIED_SIMILAR = 5


def _points(candidates: list[Candidate]) -> str:
    return json.dumps([[round(c.lat, 4), round(c.lon, 4)] for c in candidates], separators=(",", ":")) if candidates else "none"


def propose(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One prompt per neighbour count (``rag_samples`` replies each); the first coordinates of each
    reply become a proposal."""
    ctx = runtime.context
    similar = rules.retrieval_candidates(state.get("candidates") or [])
    retrieval = observations(state).retrieval
    dissimilar = retrieval.dissimilar if retrieval else []
    block = image_content_block(ctx.image.path)
    trace: list[TraceEntry] = []
    messages: list[Any] = []
    proposals: list[Candidate] = []
    failures = total = 0
    for n in NEIGHBOURS:
        neighbours = render("rag_neighbours", similar=_points(similar[:n]), dissimilar=_points(dissimilar[:n])) if n else ""
        text = render("rag_candidates", neighbours=neighbours)
        for _ in range(ctx.rag_samples):
            total += 1
            try:
                reply, entries = invoke_with_retries(ctx.chat_model, [HumanMessage(content=[{"type": "text", "text": text}, block])],
                                                     retries=ctx.settings.llm_max_retries, backoff_s=ctx.retry_backoff_s)
            except LLMFailure as exc:
                failures += 1
                trace += getattr(exc, "entries", [])
                continue
            trace += entries
            messages += [HumanMessage(text), reply]
            for lat, lon in parse_coordinates(reply.content)[:1]:
                proposals.append(Candidate(lat=lat, lon=lon, score=0.0, source="lmm", payload={"neighbours": n}))
    if failures == total:
        return {"llm_failed": True, "trace": trace, "warnings": ["every RAG prompt failed; fell back to the no-LMM policy"]}
    options = [c.model_copy() for c in [*proposals, *similar[:VERIFIED_SIMILAR]]]
    warnings = [f"{failures} of {total} RAG prompts failed"] if failures else []
    return {"candidates": proposals, "proposals": proposals, "options": options, "messages": messages, "trace": trace,
            "warnings": warnings}


def route_after_propose(state: RagState) -> str:
    return "inspect" if state.get("llm_failed") else "verify_proposals"


def choose_verified(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The option the photo verifies best; confidence from its retrieval support."""
    opts = state.get("options") or []
    if not opts:
        return {}
    ranked = sorted(opts, key=lambda o: -(o.get("verify") if o.get("verify") is not None else -2.0))
    best = ranked[0]
    similar = rules.retrieval_candidates(state.get("candidates") or [])
    support = rules.support_share(best.lat, best.lon, similar)
    proposals = state.get("proposals") or []
    score = best.get("verify")
    rationale = (f"{len(proposals)} LMM proposals from prompts with {', '.join(str(n) for n in NEIGHBOURS)} neighbours, "
                 f"verified against the photo with {len(similar[:VERIFIED_SIMILAR])} retrieval candidates; the best "
                 f"verification score ({score if score is not None else float('nan'):.3f}) is a {best.source} candidate.")
    alternatives = [Candidate(lat=o.lat, lon=o.lon, score=o.get("verify") or 0.0, source=o.source) for o in ranked[1:6]]
    answer = Answer(lat=best.lat, lon=best.lon, confidence=round(max(0.02, min(0.95, support)), 4), source=best.source,
                    rationale=rationale, alternatives=alternatives, chosen=best)
    evidence = Evidence(kind="verification", detail=f"Best verified location scored {score}.", lat=best.lat, lon=best.lon,
                        weight=score)
    return {"answer": answer, "evidence": [evidence]}


def build_rag_graph(checkpointer: Any = None) -> Any:
    graph = StateGraph(RagState, context_schema=RunContext)
    graph.add_node("observe", make_observe(dissimilar=max(NEIGHBOURS)))
    graph.add_node("propose", propose)
    graph.add_node("verify_proposals", verify)
    graph.add_node("choose_verified", choose_verified)
    add_policy_steps(graph)
    add_ending(graph)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", route_after_observe("propose"), ["propose", "name_place", "decide"])
    graph.add_conditional_edges("propose", route_after_propose, ["inspect", "verify_proposals"])
    graph.add_edge("verify_proposals", "choose_verified")
    graph.add_edge("choose_verified", "name_place")
    return graph.compile(checkpointer=checkpointer, name="geoagent-rag")
