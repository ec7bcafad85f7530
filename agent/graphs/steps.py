"""The evidence steps every graph is built from: each node calls tools and folds their typed results
into the state.

observe (EXIF, retrieval, clustering) -> inspect (OCR, segmentation) -> options (the locations to
choose between) -> verify (image-to-GPS verification of the options) -> choose (the policy's rule)
-> name_place (reverse geocoding of the answer). ``decide`` (``agent.graphs.decide``) then only
turns the state into a Prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.decision import rules
from agent.prediction import Evidence, TraceEntry
from agent.state import Answer, Observations, RunState, observations
from agent.tool_calls import call_tool
from retrieval_service.core.geo import distance_km
from retrieval_service.core.types import Candidate, RetrievalResult, Verification
from retrieval_service.evidence.clustering import ClusteringResult
from retrieval_service.evidence.exif import ExifInfo
from retrieval_service.evidence.geocoding import PlaceInfo
from retrieval_service.evidence.ocr import TextReading
from retrieval_service.evidence.scene import SceneComposition

EPS_KM = 50.0
CLUSTER_MIN_SAMPLES = 2

Node = Callable[[RunState, Runtime[RunContext]], dict[str, Any]]


def emit(runtime: Runtime[RunContext], event: dict[str, Any]) -> None:
    """Send a live event to ``stream(..., stream_mode="custom")`` consumers (a no-op otherwise)."""
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer(event)


def use_tool(runtime: Runtime[RunContext], name: str, args: dict[str, Any]) -> tuple[dict[str, Any], Any, TraceEntry]:
    """Call a tool from a node, announcing it live; ``(content, artifact, trace entry)``."""
    emit(runtime, {"type": "tool_start", "tool": name})
    content, artifact, entry = call_tool(runtime.context.tools, name, args)
    emit(runtime, {"type": "tool", **entry.model_dump()})
    return content, artifact, entry


def absorb(name: str, artifact: Any) -> dict[str, Any]:
    """The state update a tool's typed result makes (``{}`` for a failed call)."""
    if isinstance(artifact, RetrievalResult):
        update: dict[str, Any] = {"candidates": artifact.gallery + artifact.database}
        if artifact.geo_filter is None:  # a zoomed-in search does not replace the photo's own retrieval
            update["obs"] = Observations(retrieval=artifact)
        return update
    fields = {ExifInfo: "exif", ClusteringResult: "clusters", TextReading: "text", SceneComposition: "scene",
              Verification: "verification", PlaceInfo: "place"}
    for kind, field in fields.items():
        if isinstance(artifact, kind):
            return {"obs": Observations(**{field: artifact})}
    return {}


def cluster_args(candidates: list[Candidate]) -> dict[str, Any]:
    return {"candidates": [c.model_dump(include={"lat", "lon", "score", "source"}) for c in rules.retrieval_candidates(candidates)],
            "eps_km": EPS_KM, "min_samples": CLUSTER_MIN_SAMPLES}


def make_observe(dissimilar: int = 0) -> Node:
    """The first step: EXIF (GPS commits to an answer at once), retrieval (``top_k`` candidates,
    ``dissimilar`` least similar neighbours too) and the geographic clusters of the candidates."""

    def observe(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        image = ctx.image.path
        trace: list[TraceEntry] = []
        evidence: list[Evidence] = []
        warnings: list[str] = []
        obs = Observations()
        update: dict[str, Any] = {}

        _, exif, entry = use_tool(runtime, "read_exif", {"image": image})
        trace.append(entry)
        obs.exif = exif
        if exif is not None and exif.gps_problem:
            warnings.append(exif.gps_problem)
        if exif is not None and exif.gps is not None:
            lat, lon = exif.gps.lat, exif.gps.lon
            evidence.append(Evidence(kind="exif", detail=f"The photo's EXIF holds GPS coordinates {lat:.5f}, {lon:.5f}.",
                                     lat=lat, lon=lon, weight=1.0))
            update["answer"] = Answer(lat=lat, lon=lon, confidence=0.99, source="exif", rationale=(
                f"The photo's EXIF metadata holds GPS coordinates ({lat:.5f}, {lon:.5f}); they are used as the answer."))
            return {**update, "obs": obs, "trace": trace, "evidence": evidence}

        args: dict[str, Any] = {"image": image, "k": ctx.settings.top_k}
        if dissimilar:
            args["dissimilar"] = dissimilar
        content, retrieval, entry = use_tool(runtime, "retrieve", args)
        trace.append(entry)
        candidates: list[Candidate] = []
        if retrieval is None:
            warnings.append(f"retrieval failed: {content.get('error')}")
        else:
            obs.retrieval = retrieval
            candidates = retrieval.gallery + retrieval.database
        if candidates:
            _, clusters, entry = use_tool(runtime, "cluster_candidates", cluster_args(candidates))
            trace.append(entry)
            obs.clusters = clusters
            if clusters is not None and clusters.clusters:
                top = clusters.clusters[0]
                evidence.append(Evidence(kind="cluster", detail=f"{top.support} retrieval candidates cluster around "
                                         f"{top.lat:.3f}, {top.lon:.3f}.", lat=top.lat, lon=top.lon, weight=top.score_mass))
        return {"obs": obs, "candidates": candidates, "trace": trace, "evidence": evidence, "warnings": warnings}

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
    image = runtime.context.image.path
    trace: list[TraceEntry] = []
    evidence: list[Evidence] = []
    obs = Observations()
    _, obs.text, entry = use_tool(runtime, "read_text", {"image": image})
    trace.append(entry)
    _, obs.scene, entry = use_tool(runtime, "segment_scene", {"image": image})
    trace.append(entry)
    ocr = rules.ocr_candidates(obs.text)
    evidence += [Evidence(kind="ocr", detail=f"Text in the photo names {c.get('name')}.", lat=c.lat, lon=c.lon) for c in ocr]
    if obs.scene is not None and obs.scene.shares:
        evidence.append(Evidence(kind="scene", detail=f"Scene segmentation: {obs.scene.describe()}"))
    return {"obs": obs, "candidates": ocr, "trace": trace, "evidence": evidence}


def options(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The locations to choose between: cluster centres, the best retrieval candidates, OCR places."""
    candidates = state.get("candidates") or []
    obs = observations(state)
    clusters = obs.clusters.clusters if obs.clusters else []
    ocr = [c for c in candidates if c.source == "ocr"]
    return {"options": rules.build_options(candidates, clusters, ocr)}


def verify(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score the options not yet verified against the photo (verify_locations)."""
    opts = rules.attach_verification(state.get("options") or [], observations(state).verification)
    todo = rules.unverified(opts)
    if not todo:
        return {"options": opts}
    args = {"image": runtime.context.image.path, "candidates": [{"lat": o.lat, "lon": o.lon} for o in todo]}
    _, verification, entry = use_tool(runtime, "verify_locations", args)
    update: dict[str, Any] = {"trace": [entry]}
    if verification is not None:
        known = observations(state).verification
        merged = Verification(ranked=sorted([*(known.ranked if known else []), *verification.ranked], key=lambda c: -c.score))
        update["obs"] = Observations(verification=merged)
        opts = rules.attach_verification(opts, merged)
    return {**update, "options": opts}


def choose(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The policy's rule: the option with the best mix of cluster support and verification. In the
    LMM modes this is the fallback, reported as such."""
    ctx = runtime.context
    candidates = state.get("candidates") or []
    retrieval = observations(state).retrieval
    choice = rules.choose(state.get("options") or [], candidates, rest=retrieval.gallery_rest if retrieval else [])
    if choice is None:
        return {}
    warnings: list[str] = []
    by_policy = ctx.mode == "policy" or bool(state.get("llm_failed"))
    if not by_policy:
        warnings.append("no usable LMM answer; decided by cluster support and verification")
    chosen = choice.chosen
    answer = Answer(lat=chosen.lat, lon=chosen.lon, confidence=choice.confidence,
                    source=chosen.source if by_policy else "fallback", alternatives=choice.alternatives, chosen=chosen)
    evidence = Evidence(kind="decision", detail=f"{chosen.get('label') or chosen.source}: support "
                        f"{float(chosen.get('support', 0.0)):.0%}, verification {chosen.get('verify')}",
                        lat=chosen.lat, lon=chosen.lon, weight=chosen.score)
    return {"answer": answer, "evidence": [evidence], "warnings": warnings}


def name_place(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Reverse geocode the answer (unless the place of that very point is already known)."""
    answer = state.get("answer")
    if answer is None:
        return {}
    known = observations(state).place
    if known is not None and distance_km(answer.lat, answer.lon, known.lat, known.lon) <= rules.SAME_PLACE_KM:
        return {}
    _, place, entry = use_tool(runtime, "reverse_geocode", {"lat": answer.lat, "lon": answer.lon})
    update: dict[str, Any] = {"trace": [entry]}
    if place is not None:
        update["obs"] = Observations(place=place)
    return update
