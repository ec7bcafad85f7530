"""Which regions and countries a photo's text names: what makes a place read in it reliable.

Measured on the IM2GPS3k dev-256 split (``evals/bench_evidence.py``): of the 11 photos whose
text matched a gazetteer place, the top place was within 25 km of the truth for none; the matches
were surnames and words on signs ("Austin", "Moore", "Burns", "Athens", "Warden", "Toyota"), and
the gazetteer's size proxy did not tell them apart (Green, Ohio ranks above Shanghai). The one
reading that located its photo names the region beside the town ("...&Co,Austin,Minesota": Austin,
Minnesota, misspelled by the OCR). So a place counts as evidence only when the text also names
its region (first-level division) or its country, and a multi-word place phrase is refused when
the text names another region of its country right after it ("GRAND ISLE VT" is not Grand Isle,
Louisiana).

Regions are named by their full name (accent- and case-insensitive; one typo allowed in names of
``FUZZY_MIN_LEN`` letters or more, as OCR drops letters), or by their ISO 3166-2 code written in
capitals right after the place ("Austin, TX"): codes elsewhere are too often words ("OR", "IN").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from retrieval_service.evidence.words import WORD as _WORD
from retrieval_service.evidence.words import fold

FUZZY_MIN_LEN = 7
MAX_REGION_WORDS = 4


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def within_one_edit(a: str, b: str) -> bool:
    """Levenshtein distance <= 1 (one letter inserted, dropped or replaced)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return short in _deletions(long)


@dataclass
class RegionIndex:
    """Folded region and country names -> (country code, folded region name or "" for the country)."""

    names: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    fuzzy: dict[str, set[str]] = field(default_factory=dict)  # a deletion of a long one-word name -> names
    codes: dict[tuple[str, str], str] = field(default_factory=dict)  # (cc, "TX") -> folded region name

    def add(self, name: str, key: tuple[str, str]) -> None:
        folded = " ".join(_WORD.findall(fold(name)))
        if not folded:
            return
        self.names.setdefault(folded, set()).add(key)
        if " " not in folded and len(folded) >= FUZZY_MIN_LEN:
            for d in _deletions(folded) | {folded}:
                self.fuzzy.setdefault(d, set()).add(folded)

    def lookup(self, phrase: str) -> set[tuple[str, str]]:
        """The regions/countries a folded phrase names (one typo allowed in long one-word names)."""
        found = set(self.names.get(phrase, ()))
        if " " not in phrase and len(phrase) >= FUZZY_MIN_LEN - 1:
            for d in _deletions(phrase) | {phrase}:
                for name in self.fuzzy.get(d, ()):
                    if within_one_edit(phrase, name):
                        found |= self.names[name]
        return found


_index: RegionIndex | None = None
_lock = threading.Lock()


def region_index(admin1: Iterable[tuple[str, str]]) -> RegionIndex:
    """The index of the gazetteer's (country code, region) pairs, the ISO 3166-2 subdivisions and the
    countries' names (built once per process)."""
    global _index
    with _lock:
        if _index is None:
            import pycountry

            index = RegionIndex()
            for cc, region in set(admin1):
                if region:
                    index.add(region, (cc, fold(region)))
            for sub in pycountry.subdivisions:
                cc, _, code = sub.code.partition("-")
                region = fold(sub.name)
                index.add(sub.name, (cc, region))
                if code.isalpha():
                    index.codes[(cc, code.upper())] = region
            for country in pycountry.countries:
                for name in {country.name, getattr(country, "common_name", None), getattr(country, "official_name", None)}:
                    if name:
                        index.add(name, (country.alpha_2, ""))
            _index = index
        return _index


def named_regions(text: str, index: RegionIndex) -> set[tuple[str, str]]:
    """Every (country code, folded region) the text names by full name, and (cc, "") per country named."""
    words = [fold(w) for w in _WORD.findall(text)]
    found: set[tuple[str, str]] = set()
    for n in range(MAX_REGION_WORDS, 0, -1):
        for start in range(len(words) - n + 1):
            found |= index.lookup(" ".join(words[start : start + n]))
    return found


@dataclass(frozen=True)
class Assessment:
    reliable: bool
    why: str


def _region_code_after(text: str, phrase: str, cc: str, index: RegionIndex) -> str | None:
    """The region whose ISO 3166-2 code is written in capitals right after ``phrase`` ("Austin, TX")."""
    pattern = re.compile(re.escape(phrase) + r"\W{0,3}([A-Z]{2,3})\b", re.IGNORECASE)
    for m in pattern.finditer(text):
        code = m.group(1)
        if code.isupper() and (cc, code) in index.codes:
            return index.codes[(cc, code)]
    return None


def assess(name: str, region: str, cc: str, words: int, text: str, named: set[tuple[str, str]], index: RegionIndex) -> Assessment:
    """Whether the place ``name`` (in ``region``, country ``cc``; a ``words``-word phrase) read in
    ``text`` is evidence, and why."""
    own = fold(region)
    coded = _region_code_after(text, name, cc, index)
    if coded is not None:
        if coded == own or within_one_edit(coded, own):
            return Assessment(True, "its region's code follows it")
        return Assessment(False, "the text names another region of its country after it")
    if own and (cc, own) in named:
        return Assessment(True, "the text names its region")
    if (cc, "") in named:
        return Assessment(True, "the text names its country")
    if words >= 2:
        others = {r for c, r in named if c == cc and r}
        if others:
            return Assessment(False, "the text names another region of its country")
        return Assessment(True, "a place phrase of several words")
    return Assessment(False, "a single word with neither its region nor its country named (often a surname or a word)")
