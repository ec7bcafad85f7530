"""Geographic clustering re-rank (DualGeo): similarity-weighted DBSCAN on the sphere.

Distances are great-circle (haversine) distances; cluster centres are weighted spherical means
computed through 3-D unit vectors, so they are right across the antimeridian and near the poles.
Scores are only compared within a source (gallery cosines ~0.1-0.5 and image-database cosines
~0.6-1.0 are different scales): each source's weights are its scores over that source's mean.
Clusters are ordered by their weight mass; with no cluster the best point is the heaviest single
candidate, never the centroid of unrelated points.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.geo import EARTH_RADIUS_KM, distances_km, spherical_mean
from retrieval_service.core.types import Candidate, Location

logger = logging.getLogger(__name__)


class Cluster(Location):
    """One DBSCAN cluster: weighted spherical centre, member count, summed score, radius, and the
    indices of its members in the clustered candidates."""

    support: int
    score_mass: float
    weight_mass: float = 0.0
    radius_km: float
    members: list[int]


class ClusteringResult(BaseModel):
    """Clusters sorted strongest (largest weight mass) first; ``best`` is the strongest centre (or
    the heaviest single candidate when there is no cluster, with ``best_support`` 0); ``reranked`` holds the indices of
    the input candidates, nearest to ``best`` first, and ``distance_km`` each input's distance to it."""

    clusters: list[Cluster]
    best: Location
    best_support: int
    reranked: list[int]
    distance_km: list[float]
    noise: int


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


def source_weights(scores: np.ndarray, sources: Sequence[str], min_samples: int) -> np.ndarray:
    """``_weights`` computed within each source, so no source's scale outweighs another's."""
    out = np.zeros(len(scores))
    labels = np.asarray(list(sources))
    for src in dict.fromkeys(labels.tolist()):
        idx = np.flatnonzero(labels == src)
        out[idx] = _weights(scores[idx], min_samples)
    return out


def cluster_points(points: Sequence[Candidate], *, eps_km: float = 50.0, min_samples: int = 2) -> ClusteringResult:
    """Cluster scored points with haversine DBSCAN weighted by score and re-rank them."""
    if not points:
        raise GeoAgentError("no candidates to cluster", "pass at least one {lat, lon, score}")
    if eps_km <= 0:
        raise GeoAgentError(f"eps_km must be > 0, got {eps_km}", "use a neighbourhood radius such as 50 km")
    if min_samples < 1:
        raise GeoAgentError(f"min_samples must be >= 1, got {min_samples}", "use 2 (the default)")
    from sklearn.cluster import DBSCAN

    lats = np.array([p.lat for p in points], float)
    lons = np.array([p.lon for p in points], float)
    scores = np.array([p.score for p in points], float)
    weights = source_weights(scores, [p.source for p in points], min_samples)

    labels = DBSCAN(eps=eps_km / EARTH_RADIUS_KM, min_samples=min_samples, metric="haversine", algorithm="ball_tree").fit_predict(
        np.radians(np.column_stack([lats, lons])), sample_weight=weights
    )

    clusters: list[Cluster] = []
    for label in sorted(set(labels.tolist()) - {-1}):
        idx = np.flatnonzero(labels == label)
        c_lat, c_lon = spherical_mean(lats[idx], lons[idx], weights[idx])
        radius = float(distances_km(c_lat, c_lon, lats[idx], lons[idx]).max())
        clusters.append(
            Cluster(
                lat=c_lat,
                lon=c_lon,
                support=int(idx.size),
                score_mass=float(scores[idx].sum()),
                weight_mass=float(weights[idx].sum()),
                radius_km=radius,
                members=idx.tolist(),
            )
        )
    clusters.sort(key=lambda c: (c.weight_mass, c.support), reverse=True)

    if clusters:
        best_lat, best_lon, best_support = clusters[0].lat, clusters[0].lon, clusters[0].support
    else:
        heaviest = int(np.argmax(weights))
        best_lat, best_lon = float(lats[heaviest]), float(lons[heaviest])
        best_support = 0
    dist = distances_km(best_lat, best_lon, lats, lons)
    order = sorted(range(len(points)), key=lambda i: (dist[i], -scores[i]))
    logger.debug("clustered %d points into %d clusters", len(points), len(clusters))
    return ClusteringResult(
        clusters=clusters,
        best=Location(lat=best_lat, lon=best_lon),
        best_support=best_support,
        reranked=order,
        distance_km=[float(d) for d in dist],
        noise=int((labels == -1).sum()),
    )
