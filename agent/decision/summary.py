"""What a Prediction reports from the probability model, the same way in every mode: per-threshold
probabilities at the answer, search areas, clusters (modes by mass), alternatives, the surface."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from agent.decision.blas import single_blas_thread
from agent.decision.mixture import Component, Mixture, Mode
from agent.decision.rules import mode_option
from agent.prediction import AREA_LEVELS, Option, ProbabilitySurface
from retrieval_service.core.geo import EARTH_RADIUS_KM, distances_km, to_unit_vectors
from retrieval_service.evidence.clustering import Cluster

N_ALTERNATIVES = 5
SAME_PLACE_KM = 1.0
LOW_PROBABILITY = 0.05
"""An LMM answer with less than this tool-evidence probability within ``LOW_PROBABILITY_KM`` gets a warning."""
LOW_PROBABILITY_KM = 200
MAX_RING_POINTS = 64
MAX_RINGS = 4
"""Outlines are drawn around the heaviest modes only ..."""
MIN_RING_MASS = 0.01
"""... that hold at least this share of the probability."""
MAX_HULL_POINTS = 200
MAX_CLUSTERS = 20


class Summary(BaseModel):
    """The probability model's report for one answer point."""

    probabilities: dict[str, float]
    search_area_km2: dict[str, float]
    clusters: list[Cluster] = Field(default_factory=list)
    alternatives: list[Option] = Field(default_factory=list)
    surface: ProbabilitySurface | None = None


def mode_clusters(mixture: Mixture, modes: list[Mode]) -> list[Cluster]:
    """The modes as ``Cluster``s (``score_mass`` = probability mass, ``support`` = components, radius
    = farthest member centre), heaviest first."""
    modes = modes[:MAX_CLUSTERS]
    centres = to_unit_vectors([md.lat for md in modes], [md.lon for md in modes])
    out = []
    for md, centre in zip(modes, centres, strict=False):
        radius = (
            EARTH_RADIUS_KM * float(np.arccos(np.clip((mixture.mu[md.members] @ centre).min(), -1, 1))) if md.members else 0.0
        )
        out.append(
            Cluster(
                lat=md.lat,
                lon=md.lon,
                support=len(md.members),
                score_mass=round(md.mass, 6),
                radius_km=round(radius, 3),
                members=md.members,
            )
        )
    return out


def _ring(points: np.ndarray, centre: np.ndarray) -> list[tuple[float, float]]:
    """The convex hull of unit vectors around ``centre`` (gnomonic projection), as a closed (lat, lon) ring."""
    from scipy.spatial import ConvexHull, QhullError

    helper = np.array([1.0, 0, 0]) if abs(centre[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(centre, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(centre, e1)
    front = points[points @ centre > 0.05]
    if len(front) > MAX_HULL_POINTS:
        front = front[np.linspace(0, len(front) - 1, MAX_HULL_POINTS).astype(int)]
    if len(front) < 3:
        return []
    depth = front @ centre
    plane = np.column_stack([(front @ e1) / depth, (front @ e2) / depth])
    try:
        hull = ConvexHull(plane)
    except (QhullError, ValueError):
        return []
    idx = hull.vertices
    if len(idx) > MAX_RING_POINTS:
        idx = idx[np.linspace(0, len(idx) - 1, MAX_RING_POINTS).astype(int)]
    pts = centre[None, :] + plane[idx, :1] * e1[None, :] + plane[idx, 1:] * e2[None, :]
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    lats, lons = np.degrees(np.arcsin(np.clip(pts[:, 2], -1, 1))), np.degrees(np.arctan2(pts[:, 1], pts[:, 0]))
    ring = [(round(float(a), 5), round(float(b), 5)) for a, b in zip(lats, lons, strict=False)]
    return [*ring, ring[0]]


@single_blas_thread
def surface(mixture: Mixture, modes: list[Mode]) -> ProbabilitySurface:
    """Heat samples and, per level, one outline per mode holding part of the region (the convex hull of
    the samples inside the region that lie nearest that mode)."""
    x, dens = mixture.samples()
    modes = [m for m in modes[:MAX_RINGS] if m.mass >= MIN_RING_MASS] or modes[:1]
    centres = to_unit_vectors([m.lat for m in modes], [m.lon for m in modes]) if modes else np.zeros((0, 3))
    nearest = np.argmax(x @ centres.T, axis=1) if len(centres) else np.zeros(len(x), int)
    regions: dict[str, list[list[tuple[float, float]]]] = {}
    for level in AREA_LEVELS:
        inside = dens >= mixture.density_threshold(level / 100)
        rings = []
        for j, centre in enumerate(centres):
            pts = x[inside & (nearest == j)]
            ring = _ring(pts, centre) if len(pts) >= 3 else []
            if ring:
                rings.append(ring)
        regions[str(level)] = rings
    return ProbabilitySurface(heat=mixture.heat(), regions=regions)


def summarise(mixture: Mixture, lat: float, lon: float, *, with_surface: bool = True) -> Summary:
    """Probabilities of the answer (lat, lon), the search areas, clusters, alternatives, surface."""
    modes = mixture.modes()
    apart = distances_km(lat, lon, [md.lat for md in modes], [md.lon for md in modes]) > SAME_PLACE_KM
    alternatives = [
        mode_option(mixture, md) for md in [md for md, far in zip(modes, apart.tolist(), strict=False) if far][:N_ALTERNATIVES]
    ]
    return Summary(
        probabilities=mixture.probabilities(lat, lon),
        search_area_km2=mixture.search_areas(),
        clusters=mode_clusters(mixture, modes),
        alternatives=alternatives,
        surface=surface(mixture, modes) if with_surface else None,
    )


def low_probability_warning(tools: Mixture | None, lat: float, lon: float) -> str | None:
    """A warning when the tools' evidence gives an (LMM) answer little probability, else None."""
    if tools is None:
        return None
    p = float(tools.prob_within(lat, lon, [LOW_PROBABILITY_KM])[0])
    if p >= LOW_PROBABILITY:
        return None
    return (
        f"the LMM's answer has low probability under the tool evidence: P(within {LOW_PROBABILITY_KM} km) = "
        f"{p:.3f} < {LOW_PROBABILITY}; the tools point elsewhere (see alternatives)"
    )


def prediction_fields(
    mixture: Mixture | None, lat: float, lon: float, *, settings: Any, mode: str, with_surface: bool = True
) -> dict[str, Any]:
    """The Prediction's probability fields for the answer (lat, lon), the same in every mode:
    ``probabilities`` (calibrated when a calibration for this mode and these settings is saved),
    ``confidence`` (= the probability at ``settings.confidence_km``), ``calibrated``,
    ``search_area_km2``, ``surface``, ``clusters`` and ``alternatives``. No mixture (no evidence at
    all): uniform over the Earth."""
    from agent.decision import calibration

    if mixture is None:
        mixture = Mixture([Component(lat, lon, 1.0, None, "none")])
    summary = summarise(mixture, lat, lon, with_surface=with_surface)
    probabilities = summary.probabilities
    fitted = calibration.load(settings, mode)
    if fitted is not None:
        probabilities = fitted.apply(probabilities)
    key = str(int(getattr(settings, "confidence_km", 25)))
    return {
        "probabilities": probabilities,
        "raw_probabilities": summary.probabilities,
        "confidence": float(probabilities.get(key, 0.0)),
        "calibrated": fitted is not None,
        "search_area_km2": summary.search_area_km2,
        "surface": summary.surface,
        "clusters": summary.clusters,
        "alternatives": summary.alternatives,
    }
