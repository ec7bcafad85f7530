"""Every source of evidence as a distribution on the sphere (mixture components), each on its own scale.

* GeoCLIP gallery: its softmax over all 100K points (``Candidate.probability``, from the exact
  search), the top-k as kernels of ``GALLERY_SPREAD_KM``, the mass outside the top-k as the
  retriever's per-cell summary (``RetrievalResult.gallery_rest``) and what that leaves as a uniform
  component. Without probabilities (HNSW search) the candidates' cosines go through GeoCLIP's
  temperature (``GALLERY_SCALE``) and are renormalised over the candidates found.
* Image database: its own softmax of the CLIP image-image cosines at ``DATABASE_TEMPERATURE``.
* OCR places, EXIF GPS and LMM proposals: weighted point masses with a stated spread.

Each source sums to its ``SOURCE_WEIGHTS`` share, so a source with many candidates does not
outweigh one with few, and gallery cosines (~0.1-0.5) never compete with image cosines (~0.6-1.0).
Candidates found by a geo-filtered ("zoom") search (``Candidate.filtered``) are left out: they
were selected for a hypothesis and cannot support it.

A run builds each evidence set's mixture once: ``Mixtures`` (one per run, in the run context) keeps
the mixtures it built by their components, and every step that needs the probability model (the
options' support, the choice, the Prediction's probabilities, areas and clusters) asks it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

import numpy as np

from agent.decision.mixture import Component, Mixture
from retrieval_service.core.types import Candidate

GALLERY_SPREAD_KM = 25.0
"""Spread of one GeoCLIP gallery point: the 100K points lie tens of km apart over inhabited land."""
GALLERY_SCALE = 39.7
"""GeoCLIP's learned temperature exp(logit_scale), for gallery candidates that carry no probability."""
DATABASE_TEMPERATURE = 0.05
"""Softmax temperature of the image database's cosines (a 0.05 lead is worth a factor e)."""
DATABASE_SPREAD_KM = 10.0
OCR_SPREAD_KM = 15.0
"""A place named in the photo's text: a town or city."""
LMM_SPREAD_KM = 50.0
EXIF_SPREAD_KM = 0.05
"""Consumer GPS: tens of metres."""
SOURCE_WEIGHTS: dict[str, float] = {"gallery": 1.0, "database": 1.0, "ocr": 0.25, "lmm": 0.5, "exif": 1000.0}
"""Each source's share of the mixture before normalisation (EXIF GPS, when present, dominates)."""


def usable(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates that may count as evidence: not found by a geo-filtered search."""
    return [c for c in candidates if not c.filtered]


def softmax(values: Sequence[float], temperature: float) -> np.ndarray:
    x = np.asarray(values, float) / temperature
    x = np.exp(x - x.max())
    return x / x.sum()


def gallery_components(
    gallery: list[Candidate], rest: list[Candidate] = (), weight: float = SOURCE_WEIGHTS["gallery"]
) -> list[Component]:
    """GeoCLIP's distribution: the top-k, the per-cell rest and a uniform remainder."""
    if not gallery:
        return []
    if all(c.probability is not None for c in gallery):
        probs = np.array([c.probability for c in gallery], float)
        rest_p = np.array([c.probability or 0.0 for c in rest], float)
    else:
        probs, rest, rest_p = softmax([c.score for c in gallery], 1.0 / GALLERY_SCALE), [], np.zeros(0)
    out = [
        Component(c.lat, c.lon, weight * float(p), GALLERY_SPREAD_KM, "gallery", "GeoCLIP gallery point")
        for c, p in zip(gallery, probs, strict=False)
    ]
    out += [
        Component(
            c.lat,
            c.lon,
            weight * float(p),
            max(GALLERY_SPREAD_KM, float(c.get("spread_km", 0.0))),
            "gallery",
            "GeoCLIP gallery cell",
        )
        for c, p in zip(rest, rest_p, strict=False)
    ]
    left = 1.0 - float(probs.sum() + rest_p.sum())
    if left > 1e-6:
        out.append(Component(0.0, 0.0, weight * left, None, "gallery", "GeoCLIP gallery, spread thin"))
    return out


def database_components(
    database: list[Candidate], weight: float = SOURCE_WEIGHTS["database"], temperature: float = DATABASE_TEMPERATURE
) -> list[Component]:
    if not database:
        return []
    probs = softmax([c.score for c in database], temperature)
    return [
        Component(c.lat, c.lon, weight * float(p), DATABASE_SPREAD_KM, "database", str(c.get("id") or "database photo"))
        for c, p in zip(database, probs, strict=False)
    ]


def point_components(points: list[Candidate], source: str, spread_km: float, weight: float) -> list[Component]:
    """Point masses sharing ``weight`` (by ``probability`` when given, else equally)."""
    if not points:
        return []
    shares = np.array([c.probability if c.probability is not None else 1.0 for c in points], float)
    shares = shares / shares.sum() if shares.sum() > 0 else np.full(len(points), 1.0 / len(points))
    return [
        Component(c.lat, c.lon, weight * float(s), spread_km, source, str(c.get("name") or source))
        for c, s in zip(points, shares, strict=False)
    ]


def tool_components(candidates: list[Candidate], rest: list[Candidate] = ()) -> list[Component]:
    """The tools' evidence (gallery, database, OCR) as components; geo-filtered candidates left out."""
    pool = usable(candidates)
    return [
        *gallery_components([c for c in pool if c.source == "gallery"], usable(rest)),
        *database_components([c for c in pool if c.source == "database"]),
        *point_components([c for c in pool if c.source == "ocr"], "ocr", OCR_SPREAD_KM, SOURCE_WEIGHTS["ocr"]),
    ]


def components(
    candidates: Sequence[Candidate],
    rest: Sequence[Candidate] = (),
    *,
    lmm: Sequence[Candidate] = (),
    exif: Candidate | None = None,
) -> list[Component]:
    """The components of one evidence set: the tools' evidence, the LMM's proposals and EXIF GPS."""
    comps = tool_components(list(candidates), list(rest))
    comps += point_components(list(lmm), "lmm", LMM_SPREAD_KM, SOURCE_WEIGHTS["lmm"])
    if exif is not None:
        comps.append(Component(exif.lat, exif.lon, SOURCE_WEIGHTS["exif"], EXIF_SPREAD_KM, "exif", "EXIF GPS"))
    return [c for c in comps if c.weight > 0 and math.isfinite(c.weight)]


def build_mixture(
    candidates: Sequence[Candidate],
    rest: Sequence[Candidate] = (),
    *,
    lmm: Sequence[Candidate] = (),
    exif: Candidate | None = None,
) -> Mixture | None:
    """The probability model of one evidence set (None without any evidence); a new mixture each
    call: a run asks its ``Mixtures`` instead, which builds each evidence set once."""
    comps = components(candidates, rest, lmm=lmm, exif=exif)
    return Mixture(comps) if comps else None


class Mixtures:
    """The mixtures of one run, one per evidence set (keyed by its components): a mixture's samples
    and modes are its cost, and several steps need the same evidence's mixture. ``built`` counts
    the mixtures this run constructed."""

    def __init__(self) -> None:
        self._by_components: dict[tuple[Component, ...], Mixture] = {}
        self._lock = threading.Lock()
        self.built = 0

    def of(
        self,
        candidates: Sequence[Candidate],
        rest: Sequence[Candidate] = (),
        *,
        lmm: Sequence[Candidate] = (),
        exif: Candidate | None = None,
    ) -> Mixture | None:
        """The mixture of this evidence set, built on the first request (None without any evidence)."""
        comps = tuple(components(candidates, rest, lmm=lmm, exif=exif))
        if not comps:
            return None
        with self._lock:
            found = self._by_components.get(comps)
            if found is None:
                found = self._by_components[comps] = Mixture(list(comps))
                self.built += 1
        return found

    def vote(self, proposals: Sequence[Candidate]) -> Mixture | None:
        """Sampled answers (RAG's LMM proposals) as one mixture: each a point mass sharing the LMM's weight."""
        return self.of([], lmm=proposals)
