"""The evidence steps every graph is built from: each node calls tools (``agent.toolbox.Step``: the
one way to call a tool and fold its result into the state) and decides with the typed results.

observe (EXIF, retrieval, clustering) -> inspect (OCR, segmentation) -> options (the locations to
choose between) -> verify (image-to-GPS verification of the options) -> choose (the policy's rule)
-> name_place (reverse geocoding of the answer). ``decide`` (``agent.graphs.decide``) then only
turns the state into a Prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.decision import rules
from agent.decision.record import build_record
from agent.prediction import Evidence
from agent.state import Answer, Observations, RunState, observations
from agent.toolbox import Step
from retrieval_service.core.geo import distance_km
from retrieval_service.core.types import Candidate, Verification

EPS_KM = 50.0
CLUSTER_MIN_SAMPLES = 2


class Node(Protocol):
    """A graph node: the state in, a state update out, the run context at hand."""

    def __call__(self, state: RunState, *, runtime: Runtime[RunContext]) -> dict[str, Any]: ...


def cluster_args(candidates: list[Candidate]) -> dict[str, Any]:
    """The re-rank's arguments: what DualGeo clusters (``rules.rerank_pool``), eps 50 km, min_samples 2."""
    return {
        "candidates": [c.model_dump(include={"lat", "lon", "score", "source"}) for c in rules.rerank_pool(candidates)],
        "eps_km": EPS_KM,
        "min_samples": CLUSTER_MIN_SAMPLES,
    }


def exif_answer(step: Step) -> tuple[dict[str, Any] | None, list[str]]:
    """Read the EXIF: (the update committing to its GPS, or None without GPS; warnings about it)."""
    exif = step.call("read_exif").artifact
    warnings = [exif.gps_problem] if exif is not None and exif.gps_problem else []
    if exif is None or exif.gps is None:
        return None, warnings
    lat, lon = exif.gps.lat, exif.gps.lon
    evidence = Evidence(
        kind="exif", detail=f"The photo's EXIF holds GPS coordinates {lat:.5f}, {lon:.5f}.", lat=lat, lon=lon, weight=1.0
    )
    answer = Answer(
        lat=lat,
        lon=lon,
        confidence=0.99,
        source="exif",
        rationale=(f"The photo's EXIF metadata holds GPS coordinates ({lat:.5f}, {lon:.5f}); they are used as the answer."),
    )
    return step.update(answer=answer, evidence=[evidence], warnings=warnings), warnings


def retrieve(step: Step, settings: Any, dissimilar: int = 0) -> tuple[list[Candidate], list[str]]:
    """Retrieve the photo's candidates (``top_k`` of each list, ``dissimilar`` least similar too)."""
    args: dict[str, Any] = {"k": settings.top_k}
    if dissimilar:
        args["dissimilar"] = dissimilar
    result = step.call("retrieve", args)
    if result.artifact is None:
        return [], [f"retrieval failed: {result.content.get('error')}"]
    return result.artifact.gallery + result.artifact.database, []


def clusters_of(step: Step, candidates: list[Candidate]) -> list[Evidence]:
    """Re-rank the candidates by geographic clustering (DualGeo); the main cluster as evidence."""
    clusters = step.call("cluster_candidates", cluster_args(candidates)).artifact
    if clusters is None or not clusters.clusters:
        return []
    top = clusters.clusters[0]
    kind = rules.pool_name(rules.rerank_pool(candidates))
    return [
        Evidence(
            kind="cluster",
            detail=f"The main cluster of the {kind}: {top.support} around {top.lat:.3f}, {top.lon:.3f} "
            f"(within {top.radius_km:.1f} km of its centre).",
            lat=top.lat,
            lon=top.lon,
            weight=top.score_mass,
        )
    ]


def make_observe(dissimilar: int = 0, *, exif: bool = True, cluster: bool = True) -> Node:
    """The first step: EXIF (GPS commits to an answer at once; ``exif=False`` skips it), retrieval
    (``top_k`` candidates, ``dissimilar`` least similar neighbours too) and the geographic clusters
    of the candidates (``cluster=False`` skips them)."""

    def observe(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        step = Step(runtime)
        warnings: list[str] = []
        if exif:
            answered, warnings = exif_answer(step)
            if answered is not None:
                return answered
        candidates, failed = retrieve(step, runtime.context.settings, dissimilar)
        evidence = clusters_of(step, candidates) if candidates and cluster else []
        return step.update(evidence=evidence, warnings=warnings + failed)

    observe.__name__ = "observe"
    return observe


def route_after_observe(next_node: str, *, needs_candidates: bool = True) -> Callable[[RunState], str]:
    """EXIF answered -> name_place; nothing retrieved -> decide (when ``next_node`` needs candidates)."""

    def route(state: RunState) -> str:
        if state.get("answer") is not None:
            return "name_place"
        if needs_candidates and not state.get("candidates"):
            return "decide"
        return next_node

    return route


def inspect(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Read the photo's text (places named become candidates) and its scene composition."""
    step = Step(runtime)
    text = step.call("read_text").artifact
    scene = step.call("segment_scene").artifact
    ocr = rules.ocr_candidates(text)
    evidence = [
        Evidence(
            kind="ocr",
            detail=f"Text in the photo names {c.get('name')}, {c.get('region')} ({c.get('why')}).",
            lat=c.lat,
            lon=c.lon,
        )
        for c in ocr
    ]
    unconfirmed = list(dict.fromkeys(p.name for p in text.unconfirmed_places)) if text is not None else []
    if unconfirmed:
        evidence.append(
            Evidence(kind="text", detail=f"Words read that are also place names, not counted: {', '.join(unconfirmed[:5])}.")
        )
    if scene is not None and scene.shares:
        evidence.append(Evidence(kind="scene", detail=f"Scene segmentation: {scene.describe()}"))
    return step.update(candidates=ocr, evidence=evidence)


def options(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The locations to choose between: cluster centres, the best retrieval candidates, OCR places."""
    candidates = state.get("candidates") or []
    obs = observations(state)
    clusters = obs.clusters.clusters if obs.clusters else []
    ocr = [c for c in candidates if c.source == "ocr"]
    rest = obs.retrieval.gallery_rest if obs.retrieval else []
    support = rules.retrieval_mixture(runtime.context.mixtures, candidates, rest)
    return {"options": rules.build_options(candidates, clusters, ocr, support=support)}


def verify(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score the options not yet verified against the photo (verify_locations)."""
    known = observations(state).verification
    opts = rules.attach_verification(state.get("options") or [], known)
    todo = rules.unverified(opts)
    if not todo:
        return {"options": opts}
    step = Step(runtime)
    verification = step.call("verify_locations", {"candidates": [{"lat": o.lat, "lon": o.lon} for o in todo]}).artifact
    if verification is None:
        return step.update(options=opts)
    merged = Verification(ranked=sorted([*(known.ranked if known else []), *verification.ranked], key=lambda c: -c.score))
    return step.update(obs=Observations(verification=merged), options=rules.attach_verification(opts, merged))


def choose(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The policy's rule: the point with the most probability within the confidence radius under the
    tools' evidence, with its decision record (the rationale's source). In the LMM modes this is the
    fallback, reported as such."""
    ctx = runtime.context
    candidates = state.get("candidates") or []
    obs = observations(state)
    retrieval = obs.retrieval
    mixture = rules.tools_mixture(ctx.mixtures, candidates, retrieval.gallery_rest if retrieval else [])
    radius = float(ctx.settings.confidence_km)
    choice = rules.choose(state.get("options") or [], mixture, radius_km=radius)
    if choice is None:
        return {}
    warnings: list[str] = []
    by_policy = ctx.mode == "policy" or bool(state.get("llm_failed"))
    if not by_policy:
        warnings.append("no usable LMM answer; decided by the tools' evidence")
    chosen = choice.chosen
    text = obs.text
    record = build_record(
        chosen.lat,
        chosen.lon,
        radius_km=radius,
        mass=choice.confidence,
        shares=choice.shares,
        retrieval=rules.retrieval_candidates(candidates),
        clustering=obs.clusters,
        pool=rules.pool_name(rules.rerank_pool(candidates)),
        label=chosen.label,
        verification=chosen.verification,
        places_counted=[p.name for p in text.reliable_places] if text else [],
        places_not_counted=[p.name for p in text.unconfirmed_places] if text else [],
    )
    answer = Answer(
        lat=chosen.lat,
        lon=chosen.lon,
        confidence=choice.confidence,
        source=chosen.source if by_policy else "fallback",
        alternatives=choice.alternatives,
        chosen=chosen,
        decision=record,
    )
    verified = f", verification {chosen.verification:.3f}" if chosen.verification is not None else ""
    decided = ", ".join(f"{src} {share:.0%}" for src, share in choice.shares.items())
    evidence = Evidence(
        kind="decision",
        detail=f"The most probability within {radius:g} km ({choice.confidence:.0%}; from {decided or 'no source'}){verified}.",
        lat=chosen.lat,
        lon=chosen.lon,
        weight=chosen.score,
    )
    return {"answer": answer, "evidence": [evidence], "warnings": warnings}


def name_place(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Reverse geocode the answer (unless the place of that very point is already known)."""
    answer = state.get("answer")
    if answer is None:
        return {}
    known = observations(state).place
    if known is not None and distance_km(answer.lat, answer.lon, known.lat, known.lon) <= rules.SAME_PLACE_KM:
        return {}
    step = Step(runtime)
    step.call("reverse_geocode", {"lat": answer.lat, "lon": answer.lon})
    return step.update()
