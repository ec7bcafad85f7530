"""The retrieval baselines the papers' tables compare against, as small graphs built from the same
steps (so their traces and Predictions look like every other mode's; no EXIF, no LMM):

* ``retrieval``: GeoCLIP's own recipe, the top-1 retrieval candidate:
  observe (retrieve) -> pick_top -> name_place -> decide;
* ``rerank``: DualGeo's re-rank, the real candidate nearest the mean of the main geographic cluster
  of the database's neighbours (of the gallery's candidates without a database):
  observe (retrieve, cluster_candidates) -> pick_cluster -> name_place -> decide.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.decision.rules import pool_name, rerank_pool, retrieval_candidates
from agent.graphs.policy import add_ending
from agent.graphs.steps import make_observe, route_after_observe
from agent.prediction import Option
from agent.state import Answer, RunState, observations
from retrieval_service.core.types import Candidate, Source
from retrieval_service.evidence.clustering import ClusteringResult

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
    """DualGeo's re-rank: the real candidate nearest the main cluster's mean (the re-rank's
    ``best``; under the score weighting, the weighted centre); the best single candidate when no
    cluster formed."""
    obs = observations(state)
    result = obs.clusters
    pool = rerank_pool(state.get("candidates") or [])
    if result is None:  # the clustering failed: the best single candidate of the pool
        top = max(pool, key=lambda c: c.score)
        return {
            "answer": Answer(
                lat=top.lat,
                lon=top.lon,
                confidence=0.0,
                source=top.source,
                rationale=f"The geographic re-rank failed; the most similar of the {pool_name(pool)}.",
                chosen=Option.of(top),
            )
        }
    clusters = result.clusters
    kind = pool_name(result.candidates or pool)
    if not clusters:
        return {
            "answer": Answer(
                lat=result.best.lat,
                lon=result.best.lon,
                confidence=0.0,
                source=_source_at(result, pool),
                rationale=f"No cluster formed among the {kind}; the best single one.",
                chosen=Option(
                    lat=result.best.lat, lon=result.best.lon, source=_source_at(result, pool), label=f"best of the {kind}"
                ),
            )
        }
    main = clusters[0]
    what = (
        "real candidate nearest the main cluster's mean"
        if result.weighting == "none"
        else "score-weighted centre of the main cluster"
    )
    chosen = Option(
        lat=result.best.lat,
        lon=result.best.lon,
        score=main.score_mass,
        source="cluster",
        label=f"cluster 1 ({main.support} {kind})",
    )
    alternatives = [
        Option(lat=c.lat, lon=c.lon, score=c.score_mass, source="cluster", label=f"cluster {i} ({c.support} {kind})")
        for i, c in enumerate(clusters[1 : 1 + N_ALTERNATIVES], 2)
    ]
    return {
        "answer": Answer(
            lat=result.best.lat,
            lon=result.best.lon,
            confidence=0.0,
            source="cluster",
            chosen=chosen,
            alternatives=alternatives,
            rationale=f"The {what} of the {kind} (DualGeo's re-rank: the main cluster holds {main.support} of "
            f"{len(result.candidates) or len(pool)}, within {main.radius_km:.1f} km of its centre).",
        )
    }


def _source_at(result: ClusteringResult, pool: list[Candidate]) -> Source:
    """The source of the candidate the re-rank answered."""
    given = result.candidates or pool
    if result.best_index is not None and result.best_index < len(given):
        return given[result.best_index].source
    return "cluster"


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
