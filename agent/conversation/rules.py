"""Answers to follow-up questions without an LMM: read off the photo's analysis (its Prediction) by
keyword rules. Used by threads and the chat when no LMM is configured, and as the fallback reply
when the LMM fails during a follow-up."""

from __future__ import annotations

from typing import Any

from retrieval_service.core.types import Place


def _place(pred: dict[str, Any]) -> str:
    return Place.model_validate(pred.get("place") or {}).label("an unnamed place")


def summary(pred: dict[str, Any]) -> str:
    return (
        f"{pred['image']}: {pred['lat']:.5f}, {pred['lon']:.5f} near {_place(pred)} "
        f"(confidence {pred['confidence']:.2f}, source {pred['source']}). {pred.get('rationale', '')}"
    ).strip()


def rule_answer(question: str, analyses: list[dict[str, Any]]) -> str:
    """Answer a follow-up from the last analysis, without an LMM."""
    if not analyses:
        return "No photo yet: attach one with /image PATH and I will tell you where it was taken."
    pred = analyses[-1]
    q = question.lower()
    parts: list[str] = []
    if any(w in q for w in ("why", "reason", "evidence", "explain", "how do you know")):
        parts.append(pred.get("rationale") or "The analysis recorded no rationale.")
        parts += [f"- {e['kind']}: {e['detail']}" for e in pred.get("evidence") or []]
    if any(w in q for w in ("sure", "confiden", "certain", "likely")):
        parts.append(f"Confidence {pred['confidence']:.2f} (0 = a guess, 1 = certain), from {pred['source']} evidence.")
    if any(w in q for w in ("alternative", "else", "other", "instead")):
        alts = pred.get("alternatives") or []
        parts.append(
            "Alternatives: " + "; ".join(f"{a['lat']:.4f}, {a['lon']:.4f} ({a['source']})" for a in alts[:5])
            if alts
            else "The analysis kept no alternatives."
        )
    if any(w in q for w in ("country", "city", "where", "place", "region", "town")):
        parts.append(f"It was most likely taken near {_place(pred)}.")
    if any(w in q for w in ("coordinat", "lat", "gps", "position")):
        parts.append(f"Coordinates: {pred['lat']:.5f}, {pred['lon']:.5f}.")
    if any(w in q for w in ("tool", "step", "trace", "check")):
        parts.append("Steps: " + "; ".join(f"{t['tool']} -> {t['summary']}" for t in pred.get("trace") or []))
    if not parts:
        parts.append(summary(pred))
        parts.append(
            "(No LMM is configured: I answer from the analysis. Ask about the place, coordinates, "
            "confidence, alternatives, evidence or the steps taken.)"
        )
    return "\n".join(parts)
