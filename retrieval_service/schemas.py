"""Pydantic models at the retrieval boundary: candidates, geo filters, retrieval results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

CandidateSource = Literal["gallery", "database", "lmm", "exif", "ocr", "cluster"]


class Candidate(BaseModel):
    """A candidate location for a photo."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    score: float = 0.0
    source: CandidateSource = "gallery"
    payload: dict[str, Any] | None = None


class GeoFilter(BaseModel):
    """Restrict a search: a circle (lat, lon, radius_km), a bounding box, or a country code.

    Exactly one of the three forms must be given.
    """

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    radius_km: float | None = Field(default=None, gt=0, le=20_038)
    min_lat: float | None = Field(default=None, ge=-90, le=90)
    max_lat: float | None = Field(default=None, ge=-90, le=90)
    min_lon: float | None = Field(default=None, ge=-180, le=180)
    max_lon: float | None = Field(default=None, ge=-180, le=180)
    country_code: str | None = Field(default=None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def _one_form(self) -> "GeoFilter":
        circle = [self.lat, self.lon, self.radius_km]
        box = [self.min_lat, self.max_lat, self.min_lon, self.max_lon]
        forms = [
            any(v is not None for v in circle),
            any(v is not None for v in box),
            self.country_code is not None,
        ]
        if sum(forms) != 1:
            raise ValueError(
                "give exactly one geo filter: lat+lon+radius_km, or min_lat+max_lat+min_lon+max_lon, "
                "or country_code"
            )
        if forms[0] and any(v is None for v in circle):
            raise ValueError("a circle filter needs lat, lon and radius_km")
        if forms[1]:
            if any(v is None for v in box):
                raise ValueError("a bounding box needs min_lat, max_lat, min_lon and max_lon")
            if self.min_lat > self.max_lat:  # type: ignore[operator]
                raise ValueError("min_lat must be <= max_lat")
        if self.country_code is not None:
            self.country_code = self.country_code.upper()
        return self

    @property
    def kind(self) -> Literal["circle", "box", "country"]:
        if self.radius_km is not None:
            return "circle"
        if self.min_lat is not None:
            return "box"
        return "country"


class RetrievalResult(BaseModel):
    """What one retrieval returns: gallery candidates, database neighbours, dissimilar neighbours."""

    gallery: list[Candidate] = Field(default_factory=list)
    database: list[Candidate] = Field(default_factory=list)
    dissimilar: list[Candidate] = Field(default_factory=list)
    geo_filter: GeoFilter | None = None
