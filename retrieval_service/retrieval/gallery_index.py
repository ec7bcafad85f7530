"""Exact search over the GPS gallery and GeoCLIP's probabilities, as GeoCLIP computes them.

GeoCLIP scores a photo against every one of its 100K gallery coordinates (``exp(logit_scale) *
cos(image, location)``) and takes the softmax over all of them. That is one (100K x 512) matrix
product: a few milliseconds, exact, and it gives the softmax's normaliser, which no top-k search
(HNSW or exact) can. ``GalleryIndex`` keeps the gallery's vectors in memory for it; they are the
vectors stored in the gallery collection, cached beside it in the data dir as one ``.npz`` file
(written when the gallery is built, or recomputed once from the location encoder when missing).

``evals/bench_decision.py`` compares this with Qdrant's exact and HNSW search and FAISS.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval_service.core.geo import EARTH_RADIUS_KM, distances_km, from_unit_vector, to_unit_vectors
from retrieval_service.core.types import Candidate, GeoFilter

logger = logging.getLogger(__name__)

CELL_DEG = 1.0
"""Cell size (degrees of latitude, ~111 km) of the summary of the probability outside the top-k."""
REST_COVERAGE = 0.995
"""The summary keeps the heaviest cells until they hold this share of the probability outside the top-k ..."""
MAX_REST_CELLS = 128
"""... or this many cells; what is left is spread uniformly over the Earth by the decision."""
MIN_REST_SPREAD_KM = 1.0


@dataclass(frozen=True)
class GalleryHits:
    """Gallery points found for one photo: indices, cosines and GeoCLIP probabilities, best first."""

    indices: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray


def _cell_ids(coords: np.ndarray, cell_deg: float = CELL_DEG) -> np.ndarray:
    """Roughly equal-area cells: latitude bands of ``cell_deg``, each cut into as many longitude
    cells as its width at the band's centre allows."""
    n_bands = round(180 / cell_deg)
    band = np.clip(((coords[:, 0].astype(np.float64) + 90.0) / cell_deg).astype(np.int64), 0, n_bands - 1)
    centres = -90.0 + (np.arange(n_bands) + 0.5) * cell_deg
    per_band = np.maximum(1, np.round(360.0 * np.cos(np.radians(centres)) / cell_deg)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(per_band)[:-1]])
    col = ((coords[:, 1].astype(np.float64) + 180.0) / 360.0 * per_band[band]).astype(np.int64)
    return offsets[band] + np.clip(col, 0, per_band[band] - 1)


class GalleryIndex:
    """The gallery's L2-normalised location vectors in memory, with exact search and GeoCLIP's softmax."""

    def __init__(self, vectors: np.ndarray, coords: np.ndarray, countries: np.ndarray, scale: float) -> None:
        if vectors.ndim != 2 or len(vectors) != len(coords) or len(coords) != len(countries):
            raise ValueError(f"gallery arrays disagree: {vectors.shape}, {coords.shape}, {countries.shape}")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.coords = np.asarray(coords, dtype=np.float32)
        self.countries = np.asarray(countries).astype(str)
        self.scale = float(scale)
        self._xyz = to_unit_vectors(self.coords[:, 0], self.coords[:, 1])
        self._cells = _cell_ids(self.coords)
        self._n_cells = int(self._cells.max()) + 1 if len(self._cells) else 0

    def __len__(self) -> int:
        return len(self.vectors)

    # ------------------------------------------------------------------ scores
    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine of the (L2-normalised) query with every gallery point."""
        return self.vectors @ np.asarray(query, dtype=np.float32).ravel()

    def log_probabilities(self, scores: np.ndarray) -> np.ndarray:
        """GeoCLIP's log-softmax of ``scale * scores`` over the whole gallery."""
        logits = self.scale * scores.astype(np.float64)
        top = float(logits.max())
        return logits - (top + float(np.log(np.exp(logits - top).sum())))

    def mask(self, geo_filter: GeoFilter | None) -> np.ndarray | None:
        """Which gallery points a geo filter keeps (None: all). A box whose min_lon exceeds its
        max_lon crosses the antimeridian."""
        if geo_filter is None:
            return None
        lat, lon = self.coords[:, 0].astype(np.float64), self.coords[:, 1].astype(np.float64)
        if geo_filter.kind == "circle":
            return distances_km(geo_filter.lat, geo_filter.lon, lat, lon) <= geo_filter.radius_km
        if geo_filter.kind == "box":
            inside_lat = (lat >= geo_filter.min_lat) & (lat <= geo_filter.max_lat)
            if geo_filter.min_lon <= geo_filter.max_lon:
                return inside_lat & (lon >= geo_filter.min_lon) & (lon <= geo_filter.max_lon)
            return inside_lat & ((lon >= geo_filter.min_lon) | (lon <= geo_filter.max_lon))
        return self.countries == geo_filter.country_code

    # ------------------------------------------------------------------ search
    def search(
        self, query: np.ndarray, k: int, geo_filter: GeoFilter | None = None, *, lowest: bool = False
    ) -> tuple[GalleryHits, np.ndarray]:
        """The ``k`` most (``lowest``: least) similar gallery points among those the filter keeps,
        with their probabilities under GeoCLIP's softmax over the WHOLE gallery; also returns all
        the log-probabilities (for ``rest``)."""
        scores = self.scores(query)
        logp = self.log_probabilities(scores)
        keep = self.mask(geo_filter)
        pool = np.flatnonzero(keep) if keep is not None else np.arange(len(scores))
        k = min(k, len(pool))
        if k <= 0:
            empty = np.zeros(0)
            return GalleryHits(empty.astype(np.int64), empty, empty), logp
        key = scores[pool] if lowest else -scores[pool]
        part = np.argpartition(key, k - 1)[:k] if k < len(pool) else np.arange(len(pool))
        # ties broken by gallery order, like torch.topk on GeoCLIP's probabilities in practice
        order = part[np.lexsort((pool[part], key[part]))]
        idx = pool[order]
        return GalleryHits(idx, scores[idx].astype(np.float64), np.exp(logp[idx])), logp

    def candidates(self, hits: GalleryHits, *, filtered: bool = False) -> list[Candidate]:
        """Gallery hits as Candidates (score: cosine; probability: GeoCLIP's softmax; ``filtered``:
        found by a geo-filtered search)."""
        return [
            Candidate(
                lat=float(self.coords[i, 0]),
                lon=float(self.coords[i, 1]),
                score=float(s),
                probability=float(min(1.0, p)),
                source="gallery",
                filtered=filtered,
                payload={"country_code": str(self.countries[i]), "gallery_index": int(i)},
            )
            for i, s, p in zip(hits.indices.tolist(), hits.scores.tolist(), hits.probabilities.tolist(), strict=False)
        ]

    def rest(
        self,
        logp: np.ndarray,
        taken: np.ndarray,
        scores: np.ndarray | None = None,
        coverage: float = REST_COVERAGE,
        max_cells: int = MAX_REST_CELLS,
    ) -> list[Candidate]:
        """The probability outside ``taken``, summed per cell: the heaviest cells (holding
        ``coverage`` of it, at most ``max_cells``), each at the probability-weighted centre of its
        points with the spread of that mass (``payload["spread_km"]``)."""
        p = np.exp(logp)
        p[taken] = 0.0
        total = float(p.sum())
        if total <= 0 or not self._n_cells:
            return []
        n = self._n_cells
        mass = np.bincount(self._cells, weights=p, minlength=n)
        sx = np.bincount(self._cells, weights=p * self._xyz[:, 0], minlength=n)
        sy = np.bincount(self._cells, weights=p * self._xyz[:, 1], minlength=n)
        sz = np.bincount(self._cells, weights=p * self._xyz[:, 2], minlength=n)
        ss = np.bincount(self._cells, weights=p * scores, minlength=n) if scores is not None else None
        order = np.argsort(-mass)
        cum = np.cumsum(mass[order])
        n_keep = min(max_cells, int(np.searchsorted(cum, coverage * total)) + 1, int((mass > 0).sum()))
        out: list[Candidate] = []
        for c in order[:n_keep].tolist():
            m = float(mass[c])
            vec = np.array([sx[c], sy[c], sz[c]]) / m
            length = float(np.linalg.norm(vec))
            lat, lon = from_unit_vector(vec)
            spread = max(MIN_REST_SPREAD_KM, EARTH_RADIUS_KM * float(np.sqrt(max(0.0, 1.0 - min(length, 1.0)))))
            out.append(
                Candidate(
                    lat=lat,
                    lon=lon,
                    score=float(ss[c] / m) if ss is not None else 0.0,
                    probability=min(1.0, m),
                    source="gallery",
                    payload={"rest_cell": int(c), "spread_km": round(spread, 3)},
                )
            )
        return out


# ---------------------------------------------------------------------- the cache file
def save_index_arrays(path: Path, vectors: np.ndarray, coords: np.ndarray, countries: list[str] | np.ndarray) -> None:
    """Write the gallery arrays atomically (temp file + rename), so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(
            fh,
            vectors=np.asarray(vectors, dtype=np.float32),
            coords=np.asarray(coords, dtype=np.float32),
            countries=np.asarray(countries, dtype="<U2"),
        )
    os.replace(tmp, path)


def load_index_arrays(path: Path, expected: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The cached arrays, or None when the file is missing, unreadable or of the wrong size."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            vectors, coords, countries = data["vectors"], data["coords"], data["countries"]
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring the unreadable gallery cache %s: %s", path, exc)
        return None
    if len(vectors) != expected or len(coords) != expected or len(countries) != expected:
        logger.warning("ignoring the gallery cache %s: %d points, expected %d", path, len(vectors), expected)
        return None
    return vectors, coords, countries
