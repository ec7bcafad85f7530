"""The retrieval baselines the papers' tables compare against, as small graphs built from the same
steps (so their traces and Predictions look like every other mode's; no EXIF, no LMM):

* ``retrieval``: GeoCLIP's own recipe, the top-1 retrieval candidate:
  observe (retrieve) -> pick_top -> name_place -> decide;
* ``rerank``: the centre of the strongest geographic cluster of the candidates (DualGeo's re-rank):
  observe (retrieve, cluster_candidates) -> pick_cluster -> name_place -> decide.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.decision.rules import retrieval_candidates
from agent.graphs.policy import add_ending
from agent.graphs.steps import make_observe, route_after_observe
from agent.prediction import Option
from agent.state import Answer, RunState, observations

N_ALTERNATIVES = 5


def pick_top(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """GeoCLIP's top-1: the gallery point of highest probability (the database's best neighbour when
    there is no gallery candidate); scores of different sources are never compared."""
    candidates = retrieval_candidates(state.get("candidates") or [])
    pool = [c for c in candidates if c.source == "gallery"] or candidates
    ranked = sorted(pool, key=lambda c: -(c.probability if c.probability is not None else c.score))
    top = ranked[0]
    p = f", probability {top.probability:.4f}" if top.probability is not None else ""
    answer = Answer(
        lat=top.lat,
        lon=top.lon,
        confidence=0.0,
        source=top.source,
        rationale=f"Top-1 retrieval candidate (similarity {top.score:.3f}{p}).",
        alternatives=[Option.of(c) for c in ranked[1 : 1 + N_ALTERNATIVES]],
        chosen=Option.of(top),
    )
    return {"answer": answer}


def pick_cluster(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The centre of the strongest geographic cluster (the top-1 candidate when none formed)."""
    obs = observations(state)
    clusters = obs.clusters.clusters if obs.clusters else []
    if not clusters:
        top = max(retrieval_candidates(state.get("candidates") or []), key=lambda c: c.score)
        return {
            "answer": Answer(
                lat=top.lat,
                lon=top.lon,
                confidence=0.0,
                source=top.source,
                rationale="No cluster formed; top-1 retrieval candidate.",
                chosen=Option.of(top),
            )
        }
    best = clusters[0]
    chosen = Option(
        lat=best.lat, lon=best.lon, score=best.score_mass, source="cluster", label=f"cluster 1 ({best.support} candidates)"
    )
    alternatives = [
        Option(lat=c.lat, lon=c.lon, score=c.score_mass, source="cluster", label=f"cluster {i} ({c.support} candidates)")
        for i, c in enumerate(clusters[1 : 1 + N_ALTERNATIVES], 2)
    ]
    return {
        "answer": Answer(
            lat=best.lat,
            lon=best.lon,
            confidence=0.0,
            source="cluster",
            chosen=chosen,
            alternatives=alternatives,
            rationale=f"Centre of the strongest geographic cluster ({best.support} candidates).",
        )
    }


def build_baseline_graph(mode: str, checkpointer: Any = None) -> Any:
    """The ``retrieval`` or ``rerank`` graph."""
    rerank = mode == "rerank"
    pick = "pick_cluster" if rerank else "pick_top"
    graph = StateGraph(RunState, context_schema=RunContext)
    graph.add_node("observe", make_observe(exif=False, cluster=rerank))
    graph.add_node(pick, pick_cluster if rerank else pick_top)
    add_ending(graph)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", route_after_observe(pick), [pick, "name_place", "decide"])
    graph.add_edge(pick, "name_place")
    return graph.compile(checkpointer=checkpointer, name=f"geoagent-{mode}")
