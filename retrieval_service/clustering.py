"""Geographic clustering re-rank (DualGeo): similarity-weighted DBSCAN on the sphere.

Distances are great-circle (haversine) distances; cluster centres are weighted spherical means
computed through 3-D unit vectors, so they are right across the antimeridian and near the poles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from sklearn.cluster import DBSCAN
from sklearn.metrics.pairwise import haversine_distances

from retrieval_service.errors import GeoAgentError

logger = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0088


class GeoPoint(BaseModel):
    """A scored location (a retrieval candidate)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    score: float = 1.0


class Cluster(BaseModel):
    """One DBSCAN cluster: weighted spherical centre, member count, summed score, radius."""

    lat: float
    lon: float
    support: int
    score_mass: float
    radius_km: float
    members: list[int]


class RankedPoint(BaseModel):
    index: int
    lat: float
    lon: float
    score: float
    dist_km: float


class ClusteringResult(BaseModel):
    """Clusters sorted strongest first; ``best`` is the strongest centre (or the weighted centre of
    all points when there is no cluster, with ``support`` 0); ``reranked`` orders the input points
    by distance to ``best``."""

    clusters: list[Cluster]
    best_lat: float
    best_lon: float
    best_support: int
    reranked: list[RankedPoint]
    noise: int


def great_circle_km(lat1: float, lon1: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Haversine distances in km from one point to many (degrees in, km out)."""
    a = np.radians([[lat1, lon1]])
    b = np.radians(np.column_stack([np.asarray(lats, float), np.asarray(lons, float)]))
    return haversine_distances(a, b)[0] * EARTH_RADIUS_KM


def spherical_mean(lats: np.ndarray, lons: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Weighted mean position on the sphere via 3-D unit vectors, in degrees.

    Falls back to the heaviest point when the vectors cancel out (e.g. antipodal points).
    """
    lat_r, lon_r = np.radians(np.asarray(lats, float)), np.radians(np.asarray(lons, float))
    w = np.ones_like(lat_r) if weights is None else np.asarray(weights, float)
    xyz = np.column_stack([np.cos(lat_r) * np.cos(lon_r), np.cos(lat_r) * np.sin(lon_r), np.sin(lat_r)])
    v = (xyz * w[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(v))
    if norm < 1e-9 * max(float(w.sum()), 1e-12):
        i = int(np.argmax(w))
        return float(lats[i]), float(lons[i])
    v /= norm
    lat = float(np.degrees(np.arcsin(np.clip(v[2], -1.0, 1.0))))
    lon = float(np.degrees(np.arctan2(v[1], v[0])))
    return lat, lon


def _weights(scores: np.ndarray, min_samples: int) -> np.ndarray:
    """DBSCAN sample weights: score / mean score, so ``min_samples`` counts "average candidates".

    Scores are similarities (any sign); they are shifted to be positive when some are <= 0. Weights are
    capped just below ``min_samples`` so that one candidate, however strong, never forms a cluster alone.
    """
    s = np.asarray(scores, float)
    if not np.all(np.isfinite(s)):
        raise GeoAgentError("candidate scores must be finite numbers", "drop candidates with NaN/inf scores")
    if s.min() <= 0:
        s = s - s.min() + max(float(np.ptp(s)), 1.0) * 0.05
    w = s / s.mean()
    return np.minimum(w, max(min_samples - 1e-3, 1.0)) if min_samples > 1 else w


def cluster_points(points: Sequence[GeoPoint], *, eps_km: float = 50.0, min_samples: int = 2) -> ClusteringResult:
    """Cluster scored points with haversine DBSCAN weighted by score and re-rank them."""
    if not points:
        raise GeoAgentError("no candidates to cluster", "pass at least one {lat, lon, score}")
    if eps_km <= 0:
        raise GeoAgentError(f"eps_km must be > 0, got {eps_km}", "use a neighbourhood radius such as 50 km")
    if min_samples < 1:
        raise GeoAgentError(f"min_samples must be >= 1, got {min_samples}", "use 2 (the default)")
    lats = np.array([p.lat for p in points], float)
    lons = np.array([p.lon for p in points], float)
    scores = np.array([p.score for p in points], float)
    weights = _weights(scores, min_samples)

    labels = DBSCAN(
        eps=eps_km / EARTH_RADIUS_KM, min_samples=min_samples, metric="haversine", algorithm="ball_tree"
    ).fit_predict(np.radians(np.column_stack([lats, lons])), sample_weight=weights)

    clusters: list[Cluster] = []
    for label in sorted(set(labels.tolist()) - {-1}):
        idx = np.flatnonzero(labels == label)
        c_lat, c_lon = spherical_mean(lats[idx], lons[idx], weights[idx])
        radius = float(great_circle_km(c_lat, c_lon, lats[idx], lons[idx]).max())
        clusters.append(
            Cluster(
                lat=c_lat,
                lon=c_lon,
                support=int(idx.size),
                score_mass=float(scores[idx].sum()),
                radius_km=radius,
                members=idx.tolist(),
            )
        )
    clusters.sort(key=lambda c: (c.score_mass, c.support), reverse=True)

    if clusters:
        best_lat, best_lon, best_support = clusters[0].lat, clusters[0].lon, clusters[0].support
    else:
        best_lat, best_lon = spherical_mean(lats, lons, weights)
        best_support = 0
    dist = great_circle_km(best_lat, best_lon, lats, lons)
    order = sorted(range(len(points)), key=lambda i: (dist[i], -scores[i]))
    reranked = [
        RankedPoint(index=i, lat=float(lats[i]), lon=float(lons[i]), score=float(scores[i]), dist_km=float(dist[i]))
        for i in order
    ]
    logger.debug("clustered %d points into %d clusters", len(points), len(clusters))
    return ClusteringResult(
        clusters=clusters,
        best_lat=best_lat,
        best_lon=best_lon,
        best_support=best_support,
        reranked=reranked,
        noise=int((labels == -1).sum()),
    )
