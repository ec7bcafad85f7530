"""How far the reported probabilities can be trusted: ECE, Brier score, reliability diagram and the
Recall-vs-Area curve, computed from a run's rows (``probabilities``, ``search_area_km2``,
``distance_km``; a failed row is a miss with probability 0).

* ECE: the mean |predicted - observed| hit rate over ``N_BINS`` equal-width bins, weighted by count.
* Brier: the mean squared difference between the predicted probability and the 0/1 hit.
* Reliability: per bin, the mean predicted probability, the observed hit rate and the count.
* Recall-vs-Area: for an area budget A, the share of all rows whose 90% search area is at most A and
  whose true location lies inside it; "inside" is approximated as error <= sqrt(area_90 / pi) (exact
  for one round region centred on the answer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from evals.metrics import THRESHOLDS_KM

N_BINS = 10
AREA_GRID_KM2 = tuple(float(a) for a in np.logspace(0, 8, 17))


def _arrays(probs: Sequence[float], hit: Sequence[bool | float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.clip(np.asarray(probs, float), 0.0, 1.0)
    h = np.asarray(hit, float)
    if p.shape != h.shape:
        raise ValueError(f"{p.shape[0]} probabilities for {h.shape[0]} outcomes")
    return p, h


def reliability(probs: Sequence[float], hit: Sequence[bool | float], bins: int = N_BINS) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) for each non-empty bin of the predicted probability."""
    p, h = _arrays(probs, hit)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[idx == b].mean()), float(h[idx == b].mean()), int((idx == b).sum())) for b in range(bins) if (idx == b).any()
    ]


def ece(probs: Sequence[float], hit: Sequence[bool | float], bins: int = N_BINS) -> float:
    p, _ = _arrays(probs, hit)
    if p.size == 0:
        return 0.0
    return float(sum(n * abs(mp - rate) for mp, rate, n in reliability(probs, hit, bins)) / p.size)


def brier(probs: Sequence[float], hit: Sequence[bool | float]) -> float:
    p, h = _arrays(probs, hit)
    return float(np.mean((p - h) ** 2)) if p.size else 0.0


def recall_vs_area(
    areas_90: Sequence[float | None], errors_km: Sequence[float | None], grid: Sequence[float] = AREA_GRID_KM2
) -> list[tuple[float, float]]:
    """(area budget km2, share of all rows found within a 90% region no larger than it)."""
    n = len(areas_90)
    if n == 0:
        return [(a, 0.0) for a in grid]
    a = np.array([np.inf if x is None else float(x) for x in areas_90])
    d = np.array([np.inf if x is None else float(x) for x in errors_km])
    inside = d <= np.sqrt(a / math.pi)
    return [(float(budget), float(np.mean(inside & (a <= budget)))) for budget in grid]


class ConfidenceMetrics(BaseModel):
    """ECE, Brier and reliability per threshold, the confidence threshold's figures, Recall-vs-Area."""

    rows: int
    calibrated_rows: int
    ece: dict[str, float]
    brier: dict[str, float]
    reliability: dict[str, list[tuple[float, float, int]]]
    recall_vs_area: list[tuple[float, float]]


def confidence_metrics(rows: list[dict[str, Any]]) -> ConfidenceMetrics | None:
    """The metrics over the rows that report probabilities (None when none does: an older run)."""
    usable = [r for r in rows if r.get("probabilities") or r.get("error")]
    if not any(r.get("probabilities") for r in usable):
        return None
    errors = [None if r.get("error") else r.get("distance_km") for r in usable]
    out: dict[str, dict[str, Any]] = {"ece": {}, "brier": {}, "reliability": {}}
    for t in THRESHOLDS_KM:
        key = str(t)
        probs = [float((r.get("probabilities") or {}).get(key, 0.0)) for r in usable]
        hit = [d is not None and d <= t for d in errors]
        out["ece"][key] = round(ece(probs, hit), 4)
        out["brier"][key] = round(brier(probs, hit), 4)
        out["reliability"][key] = reliability(probs, hit)
    areas = [(r.get("search_area_km2") or {}).get("90") for r in usable]
    return ConfidenceMetrics(
        rows=len(usable),
        calibrated_rows=sum(1 for r in usable if r.get("calibrated")),
        recall_vs_area=recall_vs_area(areas, errors),
        **out,
    )
