"""Geolocation metrics as the papers report them.

Distance: geodesic on the WGS-84 ellipsoid (geopy, Karney's algorithm). Accuracy at a threshold
counts a row as a hit when its error is at most the threshold (``<=``, as GeoCLIP's reference
evaluation counts), over all rows: a failed row (no
prediction) is a miss. GeoScore is GeoGuessr's 5000 * exp(-d / 1492.7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from retrieval_service.core.geo import geodesic_km

THRESHOLDS_KM: tuple[int, ...] = (1, 25, 200, 750, 2500)
THRESHOLD_NAMES: dict[int, str] = {1: "street", 25: "city", 200: "region", 750: "country", 2500: "continent"}
DISTANCE_METHOD = "geodesic-wgs84"
GEOSCORE_SCALE_KM = 1492.7


distance_km = geodesic_km
"""The error of a prediction: geodesic distance in km on WGS-84 (as the papers' evaluation code)."""


def geoscore(d_km: float | None) -> float:
    """GeoGuessr score for an error in km: 5000 at 0 km; 0 for a failed row (None)."""
    if d_km is None or not math.isfinite(d_km):
        return 0.0
    return 5000.0 * math.exp(-d_km / GEOSCORE_SCALE_KM)


def hits(d_km: float | None, thresholds: Sequence[int] = THRESHOLDS_KM) -> dict[str, bool]:
    """Which thresholds an error is within (``<=``); a failed row (None) hits none."""
    return {str(t): d_km is not None and d_km <= t for t in thresholds}


def _as_array(distances: Sequence[float | None]) -> np.ndarray:
    return np.array([np.inf if d is None else float(d) for d in distances], dtype=float)


def accuracy(distances: Sequence[float | None], thresholds: Sequence[int] = THRESHOLDS_KM) -> dict[str, float]:
    """Fraction of all rows with error <= threshold (None = failed = miss); empty input -> 0."""
    d = _as_array(distances)
    if d.size == 0:
        return {str(t): 0.0 for t in thresholds}
    return {str(t): float(np.mean(d <= t)) for t in thresholds}


def bootstrap_ci(
    distances: Sequence[float | None],
    thresholds: Sequence[int] = THRESHOLDS_KM,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each accuracy (rows resampled with replacement, seeded)."""
    d = _as_array(distances)
    if d.size == 0:
        return {str(t): (0.0, 0.0) for t in thresholds}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    sample = d[idx]
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict[str, tuple[float, float]] = {}
    for t in thresholds:
        acc = (sample <= t).mean(axis=1)
        out[str(t)] = (float(np.percentile(acc, lo_q)), float(np.percentile(acc, hi_q)))
    return out
