"""The shared types: a location, THE candidate type, the one source enum, a named place, geo
filters and what retrieval returns.

``Candidate`` is the one lat/lon-with-evidence type of geoagent: the retriever returns it, the tools
carry it (as their typed artifact), the agent state holds it and the Prediction reports it. Every
coordinate-bearing type derives from ``Location``; tool argument schemas derive from these types
(``GeoFilterFields`` is the retrieve tool's filter); no layer redefines them.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, model_validator

Source = Literal["gallery", "database", "cluster", "lmm", "exif", "ocr", "text", "fallback"]
"""Where a location came from: the GeoCLIP GPS gallery, the image database, a geographic cluster
(a mode of the probability model), the LMM, the photo's EXIF GPS, a place named in its text, a
place description scored by a fusion model's text branch (``text``), or the no-LMM policy deciding
for an LMM mode that failed (``fallback``)."""
SOURCES: tuple[str, ...] = get_args(Source)


class Location(BaseModel):
    """A point on the Earth in decimal degrees."""

    lat: float = Field(ge=-90, le=90, description="Latitude in decimal degrees.")
    lon: float = Field(ge=-180, le=180, description="Longitude in decimal degrees.")


class MaybeLocated(BaseModel):
    """A record that may name a point (evidence without a place, a thread without an answer yet)."""

    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude in decimal degrees, if any.")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Longitude in decimal degrees, if any.")


class Candidate(Location):
    """A candidate location for a photo: where it comes from and how strongly it is supported.

    ``score`` is the source's own number (a cosine similarity for retrieval and verification);
    ``probability`` is the candidate's share of its source's probability distribution (for the
    GeoCLIP gallery: GeoCLIP's softmax over all gallery points with its learned temperature), None
    when the source gives none; ``payload`` holds what the source knows about it (database id,
    country code, place name...).
    """

    score: float = 0.0
    source: Source = "gallery"
    probability: float | None = Field(default=None, ge=0, le=1, description="Share of the source's probability.")
    filtered: bool = Field(
        default=False,
        description=("Found by a geo-filtered ('zoom') search: selected for a hypothesis, so never counted as support for it."),
    )
    payload: dict[str, Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """A payload value (``default`` when absent)."""
        return (self.payload or {}).get(key, default)


LAT_EDGE = 89.99999
"""Boxes stop this close to the poles: the embedded Qdrant geo index matches nothing for a box whose edge is at ±90."""


class Place(BaseModel):
    """A named place: the nearest GeoNames town (reverse geocoding), or what the LMM named itself."""

    city: str | None = None
    region: str | None = Field(default=None, description="First-level administrative region (state, province).")
    country: str | None = None
    country_code: str | None = Field(default=None, description="ISO 3166-1 alpha-2.")
    distance_km: float | None = Field(default=None, description="Distance from the coordinates to the named place.")

    def label(self, default: str = "") -> str:
        """ "City, Region, Country" (the parts that are known), or ``default``."""
        return ", ".join(p for p in (self.city, self.region, self.country) if p) or default

    def named(self) -> Place:
        """Just the place (a subclass's other fields left out)."""
        return Place(**{name: getattr(self, name) for name in Place.model_fields})


class GeoFilterFields(BaseModel):
    """The fields of a geo filter, each optional: a circle (lat, lon, radius_km), a bounding box
    (min_lat, max_lat, min_lon, max_lon) or an ISO 3166-1 alpha-2 country code."""

    lat: float | None = Field(default=None, ge=-90, le=90, description="Circle filter centre latitude.")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Circle filter centre longitude.")
    radius_km: float | None = Field(default=None, gt=0, le=20_038, description="Circle filter radius in km.")
    min_lat: float | None = Field(default=None, ge=-90, le=90)
    max_lat: float | None = Field(default=None, ge=-90, le=90)
    min_lon: float | None = Field(default=None, ge=-180, le=180)
    max_lon: float | None = Field(default=None, ge=-180, le=180)
    country_code: str | None = Field(default=None, min_length=2, max_length=2, description="ISO 3166-1 alpha-2 code.")

    def filter_given(self) -> dict[str, Any]:
        """The filter fields that are set."""
        return {name: getattr(self, name) for name in GeoFilterFields.model_fields if getattr(self, name) is not None}


class GeoFilter(GeoFilterFields):
    """Restrict a search: a circle (lat, lon, radius_km), a bounding box, or a country code.

    Exactly one of the three forms must be given. A box with ``min_lon > max_lon`` crosses the
    antimeridian (e.g. 170 to -170 around Fiji); -180..180 is every longitude. The country code must
    be a known ISO 3166-1 alpha-2 code.
    """

    @model_validator(mode="after")
    def _one_form(self) -> GeoFilter:
        circle = [self.lat, self.lon, self.radius_km]
        box = [self.min_lat, self.max_lat, self.min_lon, self.max_lon]
        forms = [
            any(v is not None for v in circle),
            any(v is not None for v in box),
            self.country_code is not None,
        ]
        if sum(forms) != 1:
            raise ValueError(
                "give exactly one geo filter: lat+lon+radius_km, or min_lat+max_lat+min_lon+max_lon, or country_code"
            )
        if forms[0] and any(v is None for v in circle):
            raise ValueError("a circle filter needs lat, lon and radius_km")
        if forms[1]:
            if any(v is None for v in box):
                raise ValueError("a bounding box needs min_lat, max_lat, min_lon and max_lon")
            if self.min_lat > self.max_lat:  # type: ignore[operator]
                raise ValueError("min_lat must be <= max_lat")
        if self.country_code is not None:
            self.country_code = self.country_code.strip().upper()
            if not _known_country(self.country_code):
                raise ValueError(
                    f"unknown country code {self.country_code!r}: give an ISO 3166-1 alpha-2 code such as FR, US or JP"
                )
        return self

    def boxes(self) -> list[tuple[float, float, float, float]]:
        """The box as (min_lat, max_lat, min_lon, max_lon) parts a store can match: split at the
        antimeridian, no part spanning 180 degrees of longitude or more, latitudes kept off the poles."""
        if self.min_lat is None or self.max_lat is None or self.min_lon is None or self.max_lon is None:
            return []  # not a box
        lat0, lat1 = max(self.min_lat, -LAT_EDGE), min(self.max_lat, LAT_EDGE)
        lon0, lon1 = float(self.min_lon), float(self.max_lon)
        spans = [(lon0, lon1)] if lon0 <= lon1 else [(lon0, 180.0), (-180.0, lon1)]
        parts: list[tuple[float, float, float, float]] = []
        for a, b in spans:
            if b - a >= 180.0:
                mid = (a + b) / 2.0
                parts += [(lat0, lat1, a, mid), (lat0, lat1, mid, b)]
            else:
                parts.append((lat0, lat1, a, b))
        return parts

    @property
    def kind(self) -> Literal["circle", "box", "country"]:
        if self.radius_km is not None:
            return "circle"
        if self.min_lat is not None:
            return "box"
        return "country"


class RetrievalResult(BaseModel):
    """What one retrieval returns: gallery candidates, database neighbours, dissimilar neighbours.

    ``gallery_rest`` summarises the gallery's probability outside the top-k candidates (only for an
    unfiltered search): one Candidate per ~1-degree cell holding mass, at the probability-weighted
    centre of its gallery points, with ``probability`` = the cell's mass and ``payload["spread_km"]``
    = the spread of that mass. With the top-k it describes GeoCLIP's whole distribution compactly.
    """

    gallery: list[Candidate] = Field(default_factory=list)
    gallery_rest: list[Candidate] = Field(default_factory=list)
    database: list[Candidate] = Field(default_factory=list)
    dissimilar: list[Candidate] = Field(default_factory=list)
    text: list[Candidate] = Field(
        default_factory=list,
        description="Place descriptions near the candidates scored against the photo by a text branch (a fusion checkpoint "
        "trained with text), with their softmax probabilities; empty without one.",
    )
    geo_filter: GeoFilter | None = None


class Verification(BaseModel):
    """Locations scored against a photo (cosine of the image and location embeddings), best first."""

    ranked: list[Candidate] = Field(default_factory=list)

    def score_near(self, lat: float, lon: float, within_km: float = 1.0) -> float | None:
        """The score of the ranked location nearest to (lat, lon), if one lies within ``within_km``."""
        from retrieval_service.core.geo import distance_km

        best = min(self.ranked, key=lambda c: distance_km(lat, lon, c.lat, c.lon), default=None)
        if best is None or distance_km(lat, lon, best.lat, best.lon) > within_km:
            return None
        return best.score


def _known_country(code: str) -> bool:
    from retrieval_service.core.geo import country_name

    return len(code) == 2 and code.isalpha() and country_name(code) != code
