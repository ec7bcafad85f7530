"""The policy's rationale in plain words, written from the decision's record (``record.DecisionRecord``)
and what the tools reported: the cluster it names is the one that holds the answer, and every count,
distance and source is read from the record, so the words cannot contradict the answer."""

from __future__ import annotations

from agent.decision.record import HOLD_KM, DecisionRecord
from agent.state import Answer, Observations
from retrieval_service.core.types import Candidate

SOURCE_NAMES = {
    "gallery": "the GPS gallery",
    "database": "the image database's similar photos",
    "ocr": "places read in the photo",
    "text": "place descriptions matched by the text branch",
    "lmm": "the LMM",
    "exif": "the EXIF GPS",
}
RETRIEVAL_NOUNS = {"gallery": "GPS gallery candidates", "database": "similar database photos"}


def _counts(rec: DecisionRecord) -> str:
    parts = [f"{n} {RETRIEVAL_NOUNS.get(src, src)}" for src, n in rec.retrieval.items()]
    return " and ".join(parts)


def _cluster(rec: DecisionRecord) -> str:
    total = sum(rec.retrieval.values())
    c = rec.cluster
    if c is None:
        return f"No cluster of the re-rank holds it; {rec.near} of the {total} retrieval candidates lie within {HOLD_KM:.0f} km of it."
    which = "the re-rank's main cluster" if c.main else "a cluster (not the re-rank's main one)"
    return (
        f"It lies in {which}: {c.members} {c.pool} within {c.radius_km:.1f} km of their centre, "
        f"the nearest {c.answer_km:.1f} km from the answer."
    )


def _decided(rec: DecisionRecord) -> str:
    if not rec.shares:
        return ""
    parts = [f"{SOURCE_NAMES.get(src, src)} {share:.0%}" for src, share in rec.shares.items() if share >= 0.005]
    return f"Decided by: {', '.join(parts)} of that probability."


def _text(rec: DecisionRecord | None, obs: Observations) -> list[str]:
    if not (obs.text and obs.text.lines):
        return []
    lines = ", ".join(repr(ln.text) for ln in obs.text.lines[:3])
    out = [f"Text read in the photo: {lines}."]
    counted = rec.places_counted if rec else list(dict.fromkeys(p.name for p in obs.text.reliable_places))
    skipped = rec.places_not_counted if rec else list(dict.fromkeys(p.name for p in obs.text.unconfirmed_places))
    if counted:
        out.append(f"Places it names, counted as evidence: {', '.join(counted[:3])}.")
    if skipped:
        out.append(
            f"Words that are also place names, not counted (neither their region nor their country named): {', '.join(skipped[:3])}."
        )
    return out


def describe(answer: Answer, *, candidates: list[Candidate], obs: Observations, place_text: str | None) -> str:
    """Why the policy chose ``answer``: the evidence at the answer, the cluster that holds it, the
    sources that decided, verification, text, scene."""
    rec = answer.decision
    where = f" near {place_text}" if place_text else ""
    parts: list[str] = []
    if rec is None:
        parts.append(
            f"The answer{where} ({answer.lat:.4f}, {answer.lon:.4f}) comes from {SOURCE_NAMES.get(answer.source, answer.source)}."
        )
    else:
        if rec.retrieval:
            parts.append(f"Image retrieval returned {_counts(rec)}.")
        parts.append(
            f"The answer{where} ({rec.lat:.4f}, {rec.lon:.4f}) is the point with the most probability within "
            f"{rec.radius_km:g} km: {rec.mass:.0%}."
        )
        if rec.retrieval:
            parts.append(_cluster(rec))
        decided = _decided(rec)
        if decided:
            parts.append(decided)
        if rec.verification is not None:
            parts.append(
                f"Image-to-GPS verification scored it {rec.verification:.3f} "
                "(reported only: for gallery points it restates the retrieval score)."
            )
    parts += _text(rec, obs)
    if obs.scene and obs.scene.shares:
        parts.append(f"Scene: {obs.scene.describe()}.")
    if obs.scene and obs.scene.hints:
        parts.append("Scene hints: " + "; ".join(obs.scene.hints[:3]) + ".")
    if rec is not None and rec.mass < 0.2:
        parts.append(
            f"The evidence is spread over several places, so the probability of being within {rec.radius_km:g} km is low."
        )
    return " ".join(parts)
