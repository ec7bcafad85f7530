"""The answer the agent commits to, with everything that led there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

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
    place: Place | None = Field(default=None, description="The nearest named place (offline GeoNames), when looked up.")

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


class Region(BaseModel):
    """One piece of a highest-density region: its outline (a contour of the density), its holes,
    its area and the probability it holds."""

    outline: list[tuple[float, float]] = Field(
        description="Closed ring of (lat, lon); longitudes unwrapped (they may pass 180), so a piece across the "
        "antimeridian is one ring. Empty for the whole Earth."
    )
    holes: list[list[tuple[float, float]]] = Field(default_factory=list, description="Closed rings cut out of the piece.")
    area_km2: float | None = Field(default=None, ge=0, description="Area of the piece on the sphere (None: not measured).")
    mass: float | None = Field(default=None, ge=0, le=1, description="Share of the probability inside the piece.")


class ProbabilitySurface(BaseModel):
    """The probability over the Earth behind the answer, for maps."""

    heat: list[tuple[float, float, float]] = Field(
        default_factory=list, description="(lat, lon, density relative to the densest point, in (0, 1]) samples of the surface."
    )
    regions: dict[str, list[Region]] = Field(
        default_factory=dict,
        description='The smallest regions holding 50% and 90% of the mass ("50", "90"): each the pieces of the '
        "density's contour at the level that holds that mass, heaviest first; their areas add up to search_area_km2.",
    )

    @field_validator("regions", mode="before")
    @classmethod
    def _bare_rings(cls, value: Any) -> Any:
        """Predictions saved before regions had areas held bare rings: each becomes a piece with its outline."""
        if isinstance(value, dict):
            return {
                level: [{"outline": r} if isinstance(r, (list, tuple)) else r for r in pieces] for level, pieces in value.items()
            }
        return value


MODEL_VERSION: Literal[1] = 1


class ProbabilityModel(BaseModel):
    """The mixture behind a Prediction's probabilities, kept so that questions about it (the
    probability of a country, a region, a city) can be answered later without running the photo
    again. Version 1: von Mises-Fisher kernels on the sphere, one column per field (spread None:
    uniform over the Earth). About 47 bytes of JSON per component: a policy run on GeoCLIP's gallery
    (top-k kernels, up to 128 cells of the rest of its softmax, database neighbours, OCR places) has
    up to ~170 components (~8 KB), an EXIF answer one (~100 bytes)."""

    version: Literal[1] = MODEL_VERSION
    lat: list[float] = Field(default_factory=list)
    lon: list[float] = Field(default_factory=list)
    weight: list[float] = Field(default_factory=list, description="Each component's share of the probability (sums to 1).")
    spread_km: list[float | None] = Field(default_factory=list, description="Each kernel's spread (None: uniform).")
    source: list[str] = Field(default_factory=list, description="Where each component came from (gallery, database, ...).")

    @model_validator(mode="after")
    def _columns_agree(self) -> ProbabilityModel:
        sizes = {len(self.lat), len(self.lon), len(self.weight), len(self.spread_km), len(self.source)}
        if len(sizes) != 1:
            raise ValueError(f"the probability model's columns differ in length: {sorted(sizes)}")
        return self


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
    model: ProbabilityModel | None = Field(
        default=None, description="The mixture the probabilities come from (None: a prediction made before it was kept)."
    )
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
