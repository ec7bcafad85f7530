"""The answer the agent commits to, with everything that led there."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from retrieval_service.core.types import Candidate, Location, MaybeLocated, Place, Source
from retrieval_service.evidence.clustering import Cluster


class Option(Candidate):
    """A location a decision chooses between (or reports as an alternative), with the decision's
    typed working values: what it is (``label``), how much of the tools' probability lies within
    ``SUPPORT_RADIUS_KM`` of it (``support``), the photo's image-to-GPS score there
    (``verification``), and for a vote of LMM proposals the ``votes`` it got of ``proposals``."""

    label: str = ""
    support: float | None = Field(default=None, ge=0, le=1, description="Tools' probability within 50 km.")
    verification: float | None = Field(default=None, description="Cosine of the photo's and the location's embeddings.")
    votes: int | None = Field(default=None, ge=0, description="LMM proposals voting for this place.")
    proposals: int | None = Field(default=None, ge=0, description="LMM proposals in the vote.")

    @model_validator(mode="before")
    @classmethod
    def _from_candidate(cls, data: Any) -> Any:
        """A plain Candidate is an option with no decision values yet."""
        return data.model_dump() if isinstance(data, Candidate) and not isinstance(data, Option) else data

    @classmethod
    def of(cls, candidate: Candidate, **values: Any) -> Option:
        """``candidate`` as an Option (its own fields kept), with ``values`` set."""
        return cls(**{**{name: getattr(candidate, name) for name in Candidate.model_fields}, **values})


class TraceEntry(BaseModel):
    """One step of the run: a tool call or an LMM call."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    summary: str = ""
    latency_ms: float = 0.0
    error: str | None = None
    tokens: dict[str, int] | None = Field(default=None, description="LMM token usage (input/output/total).")


class Evidence(MaybeLocated):
    """A piece of evidence the decision used, in words."""

    kind: str
    detail: str
    weight: float | None = None


THRESHOLDS_KM: tuple[int, ...] = (1, 25, 200, 750, 2500)
"""The error thresholds of the papers' tables (street, city, region, country, continent)."""
AREA_LEVELS: tuple[int, ...] = (50, 90)
"""The probability mass of the reported search areas, in percent."""


class Usage(BaseModel):
    """What the LMM cost for one photo (zeros when no LMM ran)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


class ProbabilitySurface(BaseModel):
    """The probability over the Earth behind the answer, for maps."""

    heat: list[tuple[float, float, float]] = Field(
        default_factory=list, description="(lat, lon, density relative to the densest point, in (0, 1]) samples of the surface."
    )
    regions: dict[str, list[list[tuple[float, float]]]] = Field(
        default_factory=dict,
        description='The smallest regions holding 50% and 90% of the mass ("50", "90"): polygons as closed rings of (lat, lon).',
    )


class Prediction(Location):
    """Where the photo was taken, how sure we are, and why."""

    image: str = Field(description="The image reference: a path, URL or sha256 content hash.")
    confidence: float = Field(ge=0, le=1)
    probabilities: dict[str, float] = Field(
        default_factory=dict, description='P(error <= t km) for t in "1", "25", "200", "750", "2500".'
    )
    search_area_km2: dict[str, float] = Field(
        default_factory=dict, description='Area of the smallest region holding 50% ("50") and 90% ("90") of the probability.'
    )
    raw_probabilities: dict[str, float] = Field(
        default_factory=dict,
        description="The probability model's own P(error <= t km), before calibration (what `geoagent calibrate` fits on).",
    )
    calibrated: bool = Field(default=False, description="Whether confidence comes from a calibration fitted on labelled runs.")
    surface: ProbabilitySurface | None = None
    source: Source
    mode: str = "policy"
    place: Place = Field(default_factory=Place)
    alternatives: list[Option] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list, description="Retrieval candidates considered.")
    clusters: list[Cluster] = Field(default_factory=list)
    rationale: str = ""
    evidence: list[Evidence] = Field(default_factory=list)
    trace: list[TraceEntry] = Field(default_factory=list)
    messages: list[dict[str, Any]] = Field(
        default_factory=list, description="LMM conversation (role, text, tool calls), image data left out."
    )
    warnings: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
