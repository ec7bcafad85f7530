"""The run's mixture kept in the Prediction (``ProbabilityModel``) and rebuilt from it, so that a
question asked later ("could it be Norway?") is answered from the same probabilities."""

from __future__ import annotations

from agent.decision.mixture import Component, Mixture
from agent.prediction import ProbabilityModel


def _significant(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def to_model(mixture: Mixture) -> ProbabilityModel:
    """The mixture's components, rounded (lat/lon to 1e-5 degrees, weights to 6 significant digits)."""
    spreads = [c.spread_km for c in mixture.components]
    return ProbabilityModel(
        lat=[round(float(c.lat), 5) for c in mixture.components],
        lon=[round(float(c.lon), 5) for c in mixture.components],
        weight=[_significant(float(w)) for w in mixture.weights],
        spread_km=[None if s is None else _significant(float(s), 5) for s in spreads],
        source=[c.source for c in mixture.components],
    )


def from_model(model: ProbabilityModel) -> Mixture:
    """The mixture a ProbabilityModel holds (the same samples, so the same probabilities)."""
    return Mixture(
        [
            Component(lat, lon, weight, spread, source)
            for lat, lon, weight, spread, source in zip(
                model.lat, model.lon, model.weight, model.spread_km, model.source, strict=True
            )
        ]
    )
