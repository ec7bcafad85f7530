"""The answer check: the LMM's submitted answer is verified against the photo and the retrieval
evidence before it becomes the Prediction.

Two checks, each scale-free: image-to-GPS verification (``verify_locations``) of the answer beside
the evidence's own locations (the top clusters and retrieval candidates, the places the photo's
text names), where the answer must not rank last; and retrieval support, where at least one
retrieval candidate must lie within ``SUPPORT_KM`` of the answer. An answer that both contradict
is kept (the model may know better) but gets a warning in the Prediction (its confidence comes from
the decision core's probability model, in which the LMM's answer is one component among the tools'
evidence); an answer that one of them contradicts gets a note in the evidence only.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.prediction import Evidence
from agent.state import AgentState, observations
from agent.toolbox import Step
from retrieval_service.core.geo import distance_km
from retrieval_service.core.types import Location

SUPPORT_KM = 200.0  # the region threshold: no retrieval candidate this close = no support
SAME_POINT_KM = 25.0  # evidence points this close to the answer are not compared with it
MAX_POINTS = 8


def evidence_points(state: AgentState) -> list[tuple[str, Location]]:
    """The evidence's own locations, labelled: cluster centres, then retrieval and OCR candidates."""
    obs = observations(state)
    points: list[tuple[str, Location]] = []
    for cluster in (obs.clusters.clusters if obs.clusters else [])[:3]:
        points.append((f"a cluster of {cluster.support} retrieval candidates", Location(lat=cluster.lat, lon=cluster.lon)))
    for c in state.get("candidates") or []:
        if c.source in ("gallery", "database", "ocr"):
            label = f"the place the photo's text names ({c.get('name')})" if c.source == "ocr" else f"a {c.source} candidate"
            points.append((label, Location(lat=c.lat, lon=c.lon)))
    kept: list[tuple[str, Location]] = []
    for label, p in points:
        if all(distance_km(p.lat, p.lon, q.lat, q.lon) > SAME_POINT_KM for _, q in kept):
            kept.append((label, p))
    return kept[:MAX_POINTS]


def check_answer(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Verify the LMM's answer against the photo and the retrieval evidence (see the module docs)."""
    answer = state.get("answer")
    if answer is None or answer.source != "lmm":
        return {}
    candidates = [c for c in state.get("candidates") or [] if c.source in ("gallery", "database")]
    others = [
        (label, p) for label, p in evidence_points(state) if distance_km(answer.lat, answer.lon, p.lat, p.lon) > SAME_POINT_KM
    ]
    if not candidates and not others:
        return {}
    supported = any(distance_km(answer.lat, answer.lon, c.lat, c.lon) <= SUPPORT_KM for c in candidates)
    update: dict[str, Any] = {}
    verified_last: tuple[str, Location, float, float] | None = None
    if len(others) >= 2:
        points = [Location(lat=answer.lat, lon=answer.lon), *(p for _, p in others)]
        step = Step(runtime)
        verification = step.call("verify_locations", {"candidates": [p.model_dump() for p in points]}).artifact
        update["trace"] = step.trace
        if verification is not None and verification.ranked:

            def score(p: Location) -> float | None:
                return next(
                    (c.score for c in verification.ranked if abs(c.lat - p.lat) < 1e-6 and abs(c.lon - p.lon) < 1e-6), None
                )

            mine = score(points[0])
            scored = [(label, p, s) for label, p in others if (s := score(p)) is not None]
            if mine is not None and scored and all(mine < s for _, _, s in scored):
                best = max(scored, key=lambda t: t[2])
                verified_last = (best[0], best[1], best[2], mine)
    if verified_last is None and supported:
        return update
    details = []
    if verified_last is not None:
        label, p, top, mine = verified_last
        details.append(
            f"the photo verifies it worst of {len(others) + 1} locations ({mine:.3f}; best {top:.3f}: "
            f"{label} at {p.lat:.3f}, {p.lon:.3f}, {distance_km(answer.lat, answer.lon, p.lat, p.lon):.0f} km away)"
        )
    if not supported and candidates:
        details.append(f"no retrieval candidate lies within {SUPPORT_KM:.0f} km of it")
    text = "; ".join(details)
    evidence = Evidence(
        kind="answer_check",
        detail=f"The LMM's answer {answer.lat:.4f}, {answer.lon:.4f}: {text}.",
        lat=answer.lat,
        lon=answer.lon,
    )
    update["evidence"] = [evidence]
    if verified_last is not None and (not supported or not candidates):
        update["warnings"] = [f"the LMM's answer is contradicted by the evidence ({text})"]
    return update
