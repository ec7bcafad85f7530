"""Places named in a question, resolved offline, and the probability that the photo was taken there,
integrated from the Prediction's kept probability model (``Prediction.model``).

A name is tried, in order, as

* a **country**: pycountry's names, official and common names and codes, plus a few everyday
  aliases; its area is Natural Earth's 1:50m outline (``agent.basemap``; a point within ~11 km of
  the coast counts as in it);
* a **first-level region** (a state, province, region: GeoNames admin1, as the reverse geocoder
  names them): a point is in it when it is in the region's country and its nearest GeoNames town
  lies in that region;
* a **city or town** (the GeoNames gazetteer, the largest place of that name): the disc of
  ``CITY_RADIUS_KM`` around it (the papers' city threshold).

P(place) is the share of the mixture's samples (4096, fixed seed: the same samples as the
Prediction's probabilities) that fall in it; where in the place the mass lies is the same samples
counted by their nearest GeoNames region (for a country) or town (for a region or a city).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from agent.basemap import countries_at
from agent.decision.kept import from_model
from agent.prediction import ProbabilityModel
from retrieval_service.core.geo import country_name, distances_km, nearest_places

if TYPE_CHECKING:
    from retrieval_service.evidence.gazetteer import Gazetteer

CITY_RADIUS_KM = 25.0
TOP_PARTS = 3
ALIASES = {
    "usa": "US",
    "us": "US",
    "america": "US",
    "the us": "US",
    "the usa": "US",
    "united states": "US",
    "the united states": "US",
    "uk": "GB",
    "the uk": "GB",
    "britain": "GB",
    "great britain": "GB",
    "holland": "NL",
    "the netherlands": "NL",
    "czech republic": "CZ",
    "russia": "RU",
    "south korea": "KR",
    "north korea": "KP",
    "korea": "KR",
    "vietnam": "VN",
    "iran": "IR",
    "syria": "SY",
    "laos": "LA",
    "bolivia": "BO",
    "venezuela": "VE",
    "tanzania": "TZ",
    "taiwan": "TW",
    "turkey": "TR",
    "ivory coast": "CI",
    "uae": "AE",
    "the uae": "AE",
}
"""Everyday names pycountry does not know (its names are the ISO ones)."""
_lock = threading.Lock()


class PlaceQuery(BaseModel):
    """A place a question names, resolved offline."""

    kind: Literal["country", "region", "city"]
    name: str = Field(description="The place's name as the gazetteer spells it.")
    country_code: str
    region: str | None = Field(default=None, description="The GeoNames admin1 name (regions and cities).")
    lat: float | None = Field(default=None, description="A city's centre.")
    lon: float | None = None
    radius_km: float | None = Field(default=None, description="A city's disc.")

    def label(self) -> str:
        if self.kind == "country":
            return self.name
        return f"{self.name} ({', '.join(p for p in (self.region if self.kind == 'city' else None, country_name(self.country_code)) if p)})"


class PlaceProbability(BaseModel):
    """P(the photo was taken in ``place``) under the Prediction's probability model."""

    place: PlaceQuery
    probability: float = Field(ge=0, le=1)
    samples: int = Field(description="Monte Carlo samples behind the estimate.")
    parts: list[tuple[str, float]] = Field(
        default_factory=list, description="Where in the place the mass lies: (region or town, share of P(place)), heaviest first."
    )


def _fold(text: str) -> str:
    from retrieval_service.evidence.gazetteer import fold

    return " ".join(fold(text).replace("-", " ").split())


@lru_cache(maxsize=1)
def _gazetteer() -> Gazetteer:
    from retrieval_service.evidence.gazetteer import Gazetteer

    return Gazetteer()


@lru_cache(maxsize=1)
def _regions() -> dict[str, tuple[str, str]]:
    """folded admin1 name -> (admin1 as spelled, country code), the country with most towns there."""
    gaz = _gazetteer()
    counts = Counter(zip(gaz.admin1, gaz.cc, strict=True))
    out: dict[str, tuple[str, str, int]] = {}
    for (admin1, cc), n in counts.items():
        key = _fold(admin1)
        if key and (key not in out or n > out[key][2]):
            out[key] = (admin1, cc, n)
    return {k: (a, c) for k, (a, c, _) in out.items()}


def _country(name: str) -> PlaceQuery | None:
    import pycountry

    key = _fold(name)
    code = ALIASES.get(key)
    if code is None:
        try:
            code = pycountry.countries.lookup(name.strip()).alpha_2
        except LookupError:
            code = next((c.alpha_2 for c in pycountry.countries if _fold(getattr(c, "common_name", c.name)) == key), None)
    if code is None:
        return None
    return PlaceQuery(kind="country", name=country_name(code), country_code=code)


def resolve(name: str) -> PlaceQuery | None:
    """The country, region or city ``name`` names (tried in that order), or None."""
    name = name.strip().strip(".?!,;:'\"").strip()
    if not name:
        return None
    with _lock:
        country = _country(name)
        if country is not None:
            return country
        region = _regions().get(_fold(name))
        if region is not None:
            return PlaceQuery(kind="region", name=region[0], country_code=region[1], region=region[0])
        found = [m for m in _gazetteer().find(name, limit=5) if _fold(m.name) == _fold(name)]
    if not found:
        return None
    city = max(found, key=lambda m: m.size)
    return PlaceQuery(
        kind="city",
        name=city.name,
        country_code=city.country_code,
        region=city.region or None,
        lat=city.lat,
        lon=city.lon,
        radius_km=CITY_RADIUS_KM,
    )


_ASKED = re.compile(
    r"^(?:so\s+)?(?:could|can|might|may|would)\s+(?:it|this|that)\s+(?:also\s+)?(?:be|have\s+been)\s+(?:taken\s+)?(?:in\s+)?(?P<a>.+)$"
    r"|^(?:is|was)\s+(?:it|this|that)\s+(?:taken\s+|shot\s+)?(?:in\s+)?(?P<b>.+)$"
    r"|^what\s+about\s+(?P<c>.+)$"
    r"|^how\s+(?:likely|probable)\s+is\s+(?:it\s+(?:that\s+it\s+is\s+)?)?(?:in\s+)?(?P<d>.+)$"
    r"|^(?:what\s+is\s+)?(?:the\s+)?(?:probability|chance|odds)\s+(?:of|for|that\s+it\s+is\s+in|it\s+is\s+in)\s+(?P<e>.+)$"
    r"|^(?:maybe|perhaps)\s+(?:in\s+)?(?P<f>.+)$",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"\s+(?:instead|rather|then|too|as\s+well|after\s+all|though)$", re.IGNORECASE)


def asked_place(question: str) -> str | None:
    """The place name in "could it be X?", "is it in X?", "what about X?", "how likely is X?",
    "probability of X", "maybe X?" (None: the question names no place that way)."""
    text = " ".join(question.strip().split()).rstrip("?!. ")
    match = _ASKED.match(text)
    if match is None:
        return None
    name = next(v for v in match.groupdict().values() if v)
    name = _TRAILING.sub("", name.strip()).strip()
    name = re.sub(r"^(?:the\s+)?(?:country|state|region|province|city|town)\s+of\s+", "", name, flags=re.IGNORECASE)
    return name or None


def probability_in(model: ProbabilityModel, place: PlaceQuery) -> PlaceProbability:
    """P(place) and where in it the mass lies, from the model's samples."""
    x, _ = from_model(model).samples()
    lats = np.degrees(np.arcsin(np.clip(x[:, 2], -1.0, 1.0)))
    lons = np.degrees(np.arctan2(x[:, 1], x[:, 0]))
    if place.kind == "city":
        inside = distances_km(float(place.lat or 0.0), float(place.lon or 0.0), lats, lons) <= (place.radius_km or CITY_RADIUS_KM)
        towns = nearest_places(list(zip(lats[inside].tolist(), lons[inside].tolist(), strict=True)))
        names = [str(t.get("name") or "") for t in towns]
    else:
        codes = np.array([c or "" for c in countries_at(lats, lons)])
        inside = codes == place.country_code
        towns = nearest_places(list(zip(lats[inside].tolist(), lons[inside].tolist(), strict=True)))
        if place.kind == "region":
            keep = np.array([t.get("admin1") == place.region for t in towns], bool)
            idx = np.flatnonzero(inside)
            inside = np.zeros(len(x), bool)
            inside[idx[keep]] = True
            names = [str(t.get("name") or "") for t, k in zip(towns, keep.tolist(), strict=True) if k]
        else:
            names = [str(t.get("admin1") or t.get("name") or "") for t in towns]
    n_in = int(inside.sum())
    parts = [(name, round(count / n_in, 3)) for name, count in Counter(names).most_common(TOP_PARTS)] if n_in else []
    return PlaceProbability(place=place, probability=round(n_in / len(x), 4), samples=len(x), parts=parts)
