"""What a Prediction reports from the probability model, the same way in every mode: per-threshold
probabilities at the answer, search areas, clusters (modes by mass), alternatives (with the nearest
named place), the surface, and the mixture itself (``model``, for questions asked later)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from agent.decision.blas import single_blas_thread
from agent.decision.kept import to_model
from agent.decision.mixture import Component, Mixture, Mode
from agent.decision.regions import density_regions
from agent.decision.rules import mode_option
from agent.prediction import AREA_LEVELS, Option, ProbabilitySurface
from retrieval_service.core.geo import EARTH_RADIUS_KM, country_name, distance_km, distances_km, nearest_places, to_unit_vectors
from retrieval_service.core.types import Place
from retrieval_service.evidence.clustering import Cluster

N_ALTERNATIVES = 5
SAME_PLACE_KM = 1.0
LOW_PROBABILITY = 0.05
"""An LMM answer with less than this tool-evidence probability within ``LOW_PROBABILITY_KM`` gets a warning."""
LOW_PROBABILITY_KM = 200
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
    for md, centre in zip(modes, centres, strict=True):
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


@single_blas_thread
def surface(mixture: Mixture) -> ProbabilitySurface:
    """Heat samples and, per level, the pieces of the highest-density region (contours of the
    density at the level holding that mass, ``agent.decision.regions``)."""
    regions = density_regions(mixture, tuple(level / 100 for level in AREA_LEVELS))
    return ProbabilitySurface(heat=mixture.heat(), regions={str(level): regions[level / 100] for level in AREA_LEVELS})


def named(options: list[Option]) -> list[Option]:
    """The options, each with its nearest named place (offline GeoNames; one batched lookup for
    those that have none yet)."""
    missing = [i for i, o in enumerate(options) if o.place is None]
    if not missing:
        return options
    rows = nearest_places([(options[i].lat, options[i].lon) for i in missing])
    out = list(options)
    for i, row in zip(missing, rows, strict=True):
        code = str(row.get("cc") or "").upper() or None
        place = Place(
            city=row.get("name") or None,
            region=row.get("admin1") or None,
            country=country_name(code) if code else None,
            country_code=code,
            distance_km=round(distance_km(options[i].lat, options[i].lon, float(row["lat"]), float(row["lon"])), 1),
        )
        out[i] = options[i].model_copy(update={"place": place})
    return out


def summarise(mixture: Mixture, lat: float, lon: float, *, with_surface: bool = True) -> Summary:
    """Probabilities of the answer (lat, lon), the search areas, clusters, alternatives, surface."""
    modes = mixture.modes()
    apart = distances_km(lat, lon, [md.lat for md in modes], [md.lon for md in modes]) > SAME_PLACE_KM
    alternatives = named(
        [mode_option(mixture, md) for md in [md for md, far in zip(modes, apart.tolist(), strict=True) if far][:N_ALTERNATIVES]]
    )
    return Summary(
        probabilities=mixture.probabilities(lat, lon),
        search_area_km2=mixture.search_areas(),
        clusters=mode_clusters(mixture, modes),
        alternatives=alternatives,
        surface=surface(mixture) if with_surface else None,
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
        "model": to_model(mixture),
    }
