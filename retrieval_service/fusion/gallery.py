"""The GPS gallery of a fusion checkpoint: coordinates encoded by the checkpoint's own GPS encoder.

Built on the store-side readiness of ``retrieval.readiness``: the collection is named
``{gallery_collection}-fusion-{fingerprint}`` where the fingerprint hashes the checkpoint file and
the coordinate list, so a fusion gallery never mixes with GeoCLIP's (or another checkpoint's) and
every client of one store builds it once. The coordinates are GeoCLIP's 100K by default, or a CSV
(``GEOAGENT_FUSION_GALLERY``), e.g. the training set's own coordinates. Exact search (the default)
needs no collection: the gallery's vectors are cached beside it in the data dir (``index_path``).
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from retrieval_service.core.geo import country_codes
from retrieval_service.fusion.encoder import FusionEncoder
from retrieval_service.retrieval.gallery_index import GalleryIndex, load_index_arrays, save_index_arrays
from retrieval_service.retrieval.readiness import ensure_built, is_complete
from retrieval_service.retrieval.stores import VectorStore

logger = logging.getLogger(__name__)

UPSERT_BATCH = 4096
FORMAT = "fusion-gallery-1"


@lru_cache(maxsize=8)
def _coords(which: str) -> np.ndarray:
    from retrieval_service.fusion.validation import gallery_coordinates

    if which == "train":
        raise ValueError("the 'train' gallery exists only during training")
    return gallery_coordinates(which)


def coordinates(settings: object) -> np.ndarray:
    return _coords(str(getattr(settings, "fusion_gallery", "geoclip")))


def fingerprint(checkpoint_fp: str, settings: object) -> str:
    """Of the checkpoint (its file's fingerprint) and the gallery coordinates."""
    digest = hashlib.sha256(FORMAT.encode())
    digest.update(checkpoint_fp.encode())
    digest.update(np.ascontiguousarray(coordinates(settings), dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def database_name(settings: object, encoder_fingerprint: str) -> str:
    """The image database of a fusion checkpoint: its own collection, never the CLIP one."""
    return f"{settings.database_collection}-fusion-{encoder_fingerprint}"


def gallery_name(settings: object, checkpoint_fp: str) -> str:
    return f"{settings.gallery_collection}-fusion-{fingerprint(checkpoint_fp, settings)}"


def index_path(settings: object, checkpoint_fp: str) -> Path:
    """Where the gallery's vectors are cached for exact search (named like its collection)."""
    return Path(settings.data_dir) / f"{gallery_name(settings, checkpoint_fp)}.npz"


def load_gallery_index(settings: object, encoder: FusionEncoder) -> GalleryIndex:
    """The checkpoint's gallery in memory for exact search: the cached vectors, or (once) its GPS
    encoder's, with the checkpoint's own temperature (its fused<->GPS logit scale)."""
    coords = coordinates(settings)
    path = index_path(settings, encoder.fingerprint)
    arrays = load_index_arrays(path, len(coords))
    if arrays is None:
        logger.warning(
            "encoding the fusion GPS gallery for exact search (%d points, once; later starts reuse %s)", len(coords), path
        )
        vectors = encoder.encode_locations(coords)
        codes = np.array([c or "" for c in country_codes([(float(a), float(b)) for a, b in coords])])
        save_index_arrays(path, vectors, coords, codes)
        arrays = (vectors, np.asarray(coords, np.float32), codes)
    vectors, stored, countries = arrays
    return GalleryIndex(vectors, stored, countries, encoder.scale)


def gallery_ready(settings: object, store: VectorStore, checkpoint_fp: str) -> bool:
    return is_complete(store.describe(gallery_name(settings, checkpoint_fp)), fingerprint(checkpoint_fp, settings))


def ensure_gallery(settings: object, store: VectorStore, encoder: FusionEncoder) -> int:
    coords = coordinates(settings)

    def fill(name: str) -> None:
        codes = country_codes([(float(a), float(b)) for a, b in coords])
        for start in range(0, len(coords), UPSERT_BATCH):
            chunk = coords[start : start + UPSERT_BATCH]
            payloads = [
                {"location": {"lat": float(lat), "lon": float(lon)}, "country_code": codes[start + i] or ""}
                for i, (lat, lon) in enumerate(chunk)
            ]
            store.upsert(name, list(range(start, start + len(chunk))), encoder.encode_locations(chunk), payloads)

    return ensure_built(
        store,
        gallery_name(settings, encoder.fingerprint),
        dim=encoder.gps_dim,
        fingerprint=fingerprint(encoder.fingerprint, settings),
        expected=len(coords),
        fill=fill,
        stall_s=float(getattr(settings, "gallery_build_stall_s", 120.0)),
    )
