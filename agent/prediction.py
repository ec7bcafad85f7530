"""The answer the agent commits to, with everything that led there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from retrieval_service.core.types import Candidate
from retrieval_service.evidence.clustering import Cluster
from retrieval_service.evidence.geocoding import PlaceInfo

PredictionSource = Literal["gallery", "database", "cluster", "lmm", "exif", "ocr", "fallback"]


class Place(BaseModel):
    """A human-readable place for coordinates (offline GeoNames unless Nominatim is enabled)."""

    city: str | None = None
    region: str | None = None
    country: str | None = None
    country_code: str | None = None
    distance_km: float | None = Field(default=None, description="Distance from the coordinates to the named place.")

    @classmethod
    def from_info(cls, info: PlaceInfo | None) -> Place:
        """The place reverse geocoding found (an empty Place for None)."""
        if info is None:
            return cls()
        return cls(city=info.place or None, region=info.admin1 or None, country=info.country or None,
                   country_code=info.country_code or None, distance_km=round(info.distance_km, 1))

    def label(self, default: str = "") -> str:
        """"City, Region, Country" (the parts that are known), or ``default``."""
        return ", ".join(p for p in (self.city, self.region, self.country) if p) or default


class TraceEntry(BaseModel):
    """One step of the run: a tool call or an LMM call."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    summary: str = ""
    latency_ms: float = 0.0
    error: str | None = None
    tokens: dict[str, int] | None = Field(default=None, description="LMM token usage (input/output/total).")


class Evidence(BaseModel):
    """A piece of evidence the decision used, in words."""

    kind: str
    detail: str
    lat: float | None = None
    lon: float | None = None
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
        default_factory=list, description="(lat, lon, density relative to the densest point, in (0, 1]) samples of the surface.")
    regions: dict[str, list[list[tuple[float, float]]]] = Field(
        default_factory=dict, description='The smallest regions holding 50% and 90% of the mass ("50", "90"): '
        "polygons as closed rings of (lat, lon).")


class Prediction(BaseModel):
    """Where the photo was taken, how sure we are, and why."""

    image: str = Field(description="The image reference: a path, URL or sha256 content hash.")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    confidence: float = Field(ge=0, le=1)
    probabilities: dict[str, float] = Field(
        default_factory=dict, description='P(error <= t km) for t in "1", "25", "200", "750", "2500".')
    search_area_km2: dict[str, float] = Field(
        default_factory=dict, description='Area of the smallest region holding 50% ("50") and 90% ("90") of the probability.')
    raw_probabilities: dict[str, float] = Field(
        default_factory=dict, description="The probability model's own P(error <= t km), before calibration (what `geoagent calibrate` fits on).")
    calibrated: bool = Field(default=False, description="Whether confidence comes from a calibration fitted on labelled runs.")
    surface: ProbabilitySurface | None = None
    source: PredictionSource
    mode: str = "policy"
    place: Place = Field(default_factory=Place)
    alternatives: list[Candidate] = Field(default_factory=list)
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
