"""Geographic clustering re-rank (DualGeo): DBSCAN on the sphere over retrieval candidates.

DualGeo's re-rank (``weighting="none"``, the default): unweighted DBSCAN with the haversine
metric (eps 50 km, min_samples 2); the main cluster is the one with the most members (ties broken
by the members' summed score); the answer is the REAL candidate nearest the main cluster's mean,
never a synthetic centre (at 1 km it matters). With no cluster the answer is the best single
candidate.

The score-weighted variant (``weighting="score"``) is kept as an option: each candidate counts as
its score over its source's mean score towards ``min_samples`` (capped so that one candidate never
forms a cluster alone), clusters are ordered by that weight mass and the answer is the weighted
centre.

Distances are great-circle (haversine) distances; centres are spherical means computed through
3-D unit vectors, so they are right across the antimeridian and near the poles. Scores are only
compared within a source (gallery cosines ~0.1-0.5 and image-database cosines ~0.6-1.0 are
different scales): wherever candidates are ranked by score, each source's scores are taken over
that source's mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.geo import EARTH_RADIUS_KM, distances_km, spherical_mean
from retrieval_service.core.types import Candidate, Location

logger = logging.getLogger(__name__)

Weighting = Literal["none", "score"]
"""``none``: DualGeo's unweighted DBSCAN; ``score``: each candidate weighted by its score."""
WEIGHTINGS: tuple[str, ...] = ("none", "score")


class Cluster(Location):
    """One DBSCAN cluster: its centre (spherical mean of the members; weighted by score under the
    score weighting), member count, summed score, radius, and the indices of its members in the
    clustered candidates."""

    support: int
    score_mass: float
    weight_mass: float = 0.0
    radius_km: float
    members: list[int]

    def holds(self, lat: float, lon: float, slack_km: float = 1e-3) -> bool:
        """Whether a point lies within the cluster's extent (its radius around its centre)."""
        return float(distances_km(self.lat, self.lon, [lat], [lon])[0]) <= self.radius_km + slack_km


class ClusteringResult(BaseModel):
    """Clusters, main cluster first; ``best`` is the re-rank's answer (DualGeo: the real candidate
    nearest the main cluster's mean, at index ``best_index``; under the score weighting the
    weighted centre; with no cluster the best single candidate, ``best_support`` 0). ``reranked``
    holds the indices of the input candidates: the main cluster's members first, then the others,
    each group nearest to ``best`` first; ``distance_km`` is each input's distance to ``best``."""

    clusters: list[Cluster]
    best: Location
    best_support: int
    best_index: int | None = Field(default=None, description="The input candidate answered (the real one nearest the centre).")
    reranked: list[int]
    distance_km: list[float]
    noise: int
    weighting: Weighting = "none"
    candidates: list[Candidate] = Field(default_factory=list, description="The clustered candidates, in input order.")

    def reranked_candidates(self) -> list[Candidate]:
        """The clustered candidates in re-rank order (main cluster first)."""
        return [self.candidates[i] for i in self.reranked if i < len(self.candidates)]

    def main_members(self) -> list[Candidate]:
        """The candidates of the main cluster (none when no cluster formed)."""
        return [self.candidates[i] for i in self.clusters[0].members if i < len(self.candidates)] if self.clusters else []


def _weights(scores: np.ndarray, min_samples: int) -> np.ndarray:
    """DBSCAN sample weights: score / mean score, so ``min_samples`` counts "average candidates".

    Scores are similarities (any sign); they are shifted to be positive when some are <= 0. Weights are
    capped just below ``min_samples`` so that one candidate, however strong, never forms a cluster alone.
    """
    s = np.asarray(scores, float)
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


def _check(points: Sequence[Candidate], eps_km: float, min_samples: int, weighting: str) -> None:
    if not points:
        raise GeoAgentError("no candidates to cluster", "pass at least one {lat, lon, score}")
    if eps_km <= 0:
        raise GeoAgentError(f"eps_km must be > 0, got {eps_km}", "use a neighbourhood radius such as 50 km")
    if min_samples < 1:
        raise GeoAgentError(f"min_samples must be >= 1, got {min_samples}", "use 2 (the default)")
    if weighting not in WEIGHTINGS:
        raise GeoAgentError(f"unknown weighting {weighting!r}", "use 'none' (DualGeo's unweighted DBSCAN) or 'score'")
    if not all(np.isfinite(p.score) for p in points):
        raise GeoAgentError("candidate scores must be finite numbers", "drop candidates with NaN/inf scores")


def cluster_points(
    points: Sequence[Candidate], *, eps_km: float = 50.0, min_samples: int = 2, weighting: Weighting = "none"
) -> ClusteringResult:
    """Cluster scored points with haversine DBSCAN and re-rank them (DualGeo's rule by default)."""
    _check(points, eps_km, min_samples, weighting)
    from sklearn.cluster import DBSCAN

    lats = np.array([p.lat for p in points], float)
    lons = np.array([p.lon for p in points], float)
    scores = np.array([p.score for p in points], float)
    relative = source_weights(scores, [p.source for p in points], min_samples)  # scores on one scale
    weighted = weighting == "score"
    sample_weight = relative if weighted else None
    labels = DBSCAN(eps=eps_km / EARTH_RADIUS_KM, min_samples=min_samples, metric="haversine", algorithm="ball_tree").fit_predict(
        np.radians(np.column_stack([lats, lons])), sample_weight=sample_weight
    )

    clusters: list[Cluster] = []
    for label in sorted(set(labels.tolist()) - {-1}):
        idx = np.flatnonzero(labels == label)
        c_lat, c_lon = spherical_mean(lats[idx], lons[idx], relative[idx] if weighted else None)
        radius = float(distances_km(c_lat, c_lon, lats[idx], lons[idx]).max())
        clusters.append(
            Cluster(
                lat=c_lat,
                lon=c_lon,
                support=int(idx.size),
                score_mass=float(scores[idx].sum()),
                weight_mass=float(relative[idx].sum()),
                radius_km=radius,
                members=idx.tolist(),
            )
        )
    if weighted:
        clusters.sort(key=lambda c: (c.weight_mass, c.support), reverse=True)
    else:  # DualGeo: most members; ties by summed score (on each source's own scale)
        clusters.sort(key=lambda c: (c.support, c.weight_mass), reverse=True)

    best_index: int | None
    if clusters:
        main = clusters[0]
        members = np.array(main.members)
        nearest = members[int(np.argmin(distances_km(main.lat, main.lon, lats[members], lons[members])))]
        best_index = int(nearest)
        best_lat, best_lon = (main.lat, main.lon) if weighted else (float(lats[nearest]), float(lons[nearest]))
        best_support = main.support
    else:
        best_index = int(np.argmax(relative))
        best_lat, best_lon = float(lats[best_index]), float(lons[best_index])
        best_support = 0
    dist = distances_km(best_lat, best_lon, lats, lons)
    in_main = set(clusters[0].members) if clusters else set()
    order = sorted(range(len(points)), key=lambda i: (i not in in_main, dist[i], -relative[i]))
    logger.debug("clustered %d points into %d clusters (%s weighting)", len(points), len(clusters), weighting)
    return ClusteringResult(
        clusters=clusters,
        best=Location(lat=best_lat, lon=best_lon),
        best_support=best_support,
        best_index=best_index,
        reranked=order,
        distance_km=[float(d) for d in dist],
        noise=int((labels == -1).sum()),
        weighting=weighting,
        candidates=list(points),
    )
