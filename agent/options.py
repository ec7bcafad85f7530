"""Per-call options of the Python API, and the GeoCLIP-style answer of ``GeoAgent.predict``.

``RunOptions`` is the one typed form of what a single call may change (``agent.invoke(photo,
top_k=5, mode="retrieval")``); everything else comes from the agent's settings. ``TopK`` is what
GeoCLIP users expect from ``predict(image, top_k)``: the k most probable places with probabilities.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.prediction import Prediction
from retrieval_service.core.errors import ConfigError
from retrieval_service.retrieval.settings import MAX_TOP_K


class RunOptions(BaseModel):
    """What one call may change (None: the agent's own setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_k: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOP_K,
        description="Candidates per list of the run's retrieval step (the LMM may still ask for another k).",
    )
    mode: str | None = Field(default=None, description="The graph this call runs (an LMM mode needs an LMM).")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str | None) -> str | None:
        from agent.modes import check_mode

        return None if mode is None else check_mode(mode)

    @classmethod
    def of(cls, options: dict[str, Any]) -> RunOptions:
        """The options passed as keywords, checked: a ConfigError naming the bad one and the fix."""
        try:
            return cls(**options)
        except ConfigError:
            raise
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "options"
            if first["type"] == "extra_forbidden":
                raise ConfigError(
                    f"unknown option {name!r} for this call", f"per-call options are: {', '.join(cls.model_fields)}"
                ) from None
            raise ConfigError(f"option {name}: {first['msg']}", f"pass {name} as {cls.model_fields[name].description}") from None


class TopK(BaseModel):
    """The k most probable places, best first, GeoCLIP-style: ``gps[i]`` (lat, lon) and
    ``probabilities[i]`` = P(the photo was taken within 25 km of it) under the Prediction's
    probability model. The first is the answer; the others are the mixture's other modes by the
    probability that flows to them (the Prediction's ``clusters``: at most 20, so fewer than k places
    when the model has fewer modes). GeoCLIP's own ``predict`` gives gallery points with their share
    of its softmax; here nearby gallery points are one place."""

    gps: list[tuple[float, float]]
    probabilities: list[float]
    prediction: Prediction
