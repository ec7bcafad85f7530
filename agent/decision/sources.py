"""Every source of evidence as a distribution on the sphere (mixture components), each on its own scale.

* GeoCLIP gallery: its softmax over all 100K points (``Candidate.probability``, from the exact
  search), the top-k as kernels of the gallery's spread, the mass outside the top-k as the
  retriever's per-cell summary (``RetrievalResult.gallery_rest``) and what that leaves as a uniform
  component. Without probabilities (HNSW search) the candidates' cosines go through GeoCLIP's
  temperature (``GALLERY_SCALE``) and are renormalised over the candidates found.
* Image database: its own softmax of the CLIP image-image cosines at ``DATABASE_TEMPERATURE``.
* Places read in the photo, and towns whose descriptions a fusion model's text branch matched to
  the photo: their measured (or stated) error distribution (``reliability.SourceRow.bands``);
  LMM proposals and EXIF GPS: weighted point masses with a stated spread.

Each source's weight and spread come from the evidence table (``agent.decision.reliability``:
measured on the dev split where that was possible, stated priors otherwise, each row saying
which). Each source sums to its weight, so a source with many candidates does not outweigh one with
few, and gallery cosines (~0.1-0.5) never compete with image cosines (~0.6-1.0). Candidates found
by a geo-filtered ("zoom") search (``Candidate.filtered``) are left out: they were selected for a
hypothesis and cannot support it.

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
from agent.decision.reliability import SourceRow, load_table
from retrieval_service.core.types import Candidate

GALLERY_SCALE = 39.7
"""GeoCLIP's learned temperature exp(logit_scale), for gallery candidates that carry no probability."""
DATABASE_TEMPERATURE = 0.05
"""Softmax temperature of the image database's cosines (a 0.05 lead is worth a factor e)."""


def weight(source: str) -> float:
    """The source's weight in the mixture (the evidence table)."""
    return load_table().row(source).weight


def spread_km(source: str) -> float:
    """A kernel source's spread (the evidence table)."""
    spread = load_table().row(source).spread_km
    assert spread is not None, f"{source} is not a kernel source"
    return spread


def usable(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates that may count as evidence: not found by a geo-filtered search."""
    return [c for c in candidates if not c.filtered]


def softmax(values: Sequence[float], temperature: float) -> np.ndarray:
    x = np.asarray(values, float) / temperature
    x = np.exp(x - x.max())
    return x / x.sum()


def gallery_components(gallery: list[Candidate], rest: Sequence[Candidate] = ()) -> list[Component]:
    """GeoCLIP's distribution: the top-k, the per-cell rest and a uniform remainder."""
    if not gallery:
        return []
    w, spread = weight("gallery"), spread_km("gallery")
    if all(c.probability is not None for c in gallery):
        probs = np.array([c.probability for c in gallery], float)
        rest_p = np.array([c.probability or 0.0 for c in rest], float)
    else:
        probs, rest, rest_p = softmax([c.score for c in gallery], 1.0 / GALLERY_SCALE), (), np.zeros(0)
    out = [
        Component(c.lat, c.lon, w * float(p), spread, "gallery", "GeoCLIP gallery point")
        for c, p in zip(gallery, probs, strict=True)
    ]
    out += [
        Component(c.lat, c.lon, w * float(p), max(spread, float(c.get("spread_km", 0.0))), "gallery", "GeoCLIP gallery cell")
        for c, p in zip(rest, rest_p, strict=True)
    ]
    left = 1.0 - float(probs.sum() + rest_p.sum())
    if left > 1e-6:
        out.append(Component(0.0, 0.0, w * left, None, "gallery", "GeoCLIP gallery, spread thin"))
    return out


def database_components(database: list[Candidate], temperature: float = DATABASE_TEMPERATURE) -> list[Component]:
    if not database:
        return []
    w, spread = weight("database"), spread_km("database")
    probs = softmax([c.score for c in database], temperature)
    return [
        Component(c.lat, c.lon, w * float(p), spread, "database", str(c.get("id") or "database photo"))
        for c, p in zip(database, probs, strict=True)
    ]


def _shares(points: list[Candidate]) -> np.ndarray:
    shares = np.array([c.probability if c.probability is not None else 1.0 for c in points], float)
    return shares / shares.sum() if shares.sum() > 0 else np.full(len(points), 1.0 / len(points))


def point_components(points: list[Candidate], source: str, row: SourceRow | None = None) -> list[Component]:
    """Point masses sharing the source's weight (by ``probability`` when given, else equally): a
    kernel source's at its spread, a measured point source's as its error distribution (one kernel
    per band and a uniform rest). ``row``: the source's row (default: the evidence table's)."""
    if not points:
        return []
    row = row or load_table().row(source)
    shares = _shares(points)
    if row.kind == "kernel":
        assert row.spread_km is not None
        return [
            Component(c.lat, c.lon, row.weight * float(s), row.spread_km, source, str(c.get("name") or source))
            for c, s in zip(points, shares, strict=True)
        ]
    out = []
    for c, s in zip(points, shares, strict=True):
        label = str(c.get("name") or source)
        for spread, band in row.bands():
            if band > 0:
                out.append(Component(c.lat, c.lon, row.weight * float(s) * band, spread, source, label))
    return out


def tool_components(candidates: list[Candidate], rest: Sequence[Candidate] = ()) -> list[Component]:
    """The tools' evidence (gallery, database, places read, place descriptions scored by a text branch)
    as components; geo-filtered candidates left out."""
    pool = usable(candidates)
    return [
        *gallery_components([c for c in pool if c.source == "gallery"], usable(rest)),
        *database_components([c for c in pool if c.source == "database"]),
        *point_components([c for c in pool if c.source == "ocr"], "ocr"),
        *point_components([c for c in pool if c.source == "text"], "text"),
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
    comps += point_components(list(lmm), "lmm")
    if exif is not None:
        comps.append(Component(exif.lat, exif.lon, weight("exif"), spread_km("exif"), "exif", "EXIF GPS"))
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
