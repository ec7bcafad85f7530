"""The policy's rationale in plain words, built only from what the tools reported."""

from __future__ import annotations

from agent.decision.rules import SUPPORT_RADIUS_KM, retrieval_candidates
from agent.state import Answer, Observations
from retrieval_service.core.types import Candidate


def describe(answer: Answer, *, candidates: list[Candidate], obs: Observations, place_text: str | None) -> str:
    """Why the policy chose ``answer``: retrieval, clusters, support, verification, text, scene."""
    parts: list[str] = []
    n = len(retrieval_candidates(candidates))
    chosen = answer.chosen
    where = f" near {place_text}" if place_text else ""
    if n:
        parts.append(f"Image retrieval returned {n} candidate locations.")
    clusters = obs.clusters.clusters if obs.clusters else []
    if clusters:
        top = clusters[0]
        parts.append(f"The strongest cluster groups {top.support} of them within about {top.radius_km:.1f} km.")
    if chosen is not None:
        support = chosen.support or 0.0
        parts.append(
            f"The answer{where} ({answer.lat:.4f}, {answer.lon:.4f}) is a {chosen.label or chosen.source} "
            f"holding {support:.0%} of the retrieval evidence's probability within {SUPPORT_RADIUS_KM:.0f} km."
        )
        if chosen.verification is not None:
            others = [o.verification for o in answer.alternatives if o.verification is not None]
            versus = f" against at most {max(others):.3f} for the alternatives" if others else ""
            parts.append(
                f"Image-to-GPS verification scored it {chosen.verification:.3f}{versus} "
                "(reported only: for gallery points it restates the retrieval score)."
            )
    if obs.text and obs.text.lines:
        lines = [ln.text for ln in obs.text.lines[:3]]
        places = list(dict.fromkeys(p.name for p in obs.text.places))
        parts.append(
            f"Text read in the photo: {', '.join(repr(s) for s in lines)}"
            + (f" (place names: {', '.join(places[:3])})." if places else " (no known place names).")
        )
    if obs.scene and obs.scene.shares:
        parts.append(f"Scene: {obs.scene.describe()}.")
    if obs.scene and obs.scene.hints:
        parts.append("Scene hints: " + "; ".join(obs.scene.hints[:3]) + ".")
    if answer.confidence < 0.2:
        parts.append("The evidence is spread over several places, so the probability of being within 25 km is low.")
    return " ".join(parts)
