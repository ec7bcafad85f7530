"""The GPS gallery collection: GeoCLIP's 100K coordinates, encoded once by the location encoder.

The collection is named by the fingerprint of the GeoCLIP weights and records its completion in
its own metadata (``readiness``), so every client of one Qdrant server or cluster builds it at
most once between them, and a second start does not re-encode.

Exact search (the default: GeoCLIP scores every gallery point, ``gallery_index``) needs no
collection: it keeps the gallery's vectors as one ``.npz`` file in the data dir, encoded on first use
behind a progress bar (a few minutes on a CPU).
The Qdrant collection serves ``GEOAGENT_GALLERY_SEARCH=hnsw`` and fusion encoders.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache

import numpy as np

from retrieval_service.core.geo import country_codes
from retrieval_service.retrieval.gallery_index import GalleryIndex, load_index_arrays, save_index_arrays
from retrieval_service.retrieval.geoclip_heads import GPS_DIM, GeoClipHeads, gallery_coordinates, geoclip_files
from retrieval_service.retrieval.readiness import ensure_built, is_complete
from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores import VectorStore

logger = logging.getLogger(__name__)

UPSERT_BATCH = 4096
ENCODE_CHUNK = 4096
"""Gallery coordinates encoded per step of the progress bar."""
GALLERY_FORMAT = "1"  # bump when the gallery's vectors or payload change, so old builds are rebuilt


@lru_cache(maxsize=1)
def weights_fingerprint() -> str:
    """Hash of the location-encoder weights and gallery file, so a changed wheel triggers a rebuild."""
    files = geoclip_files()
    digest = hashlib.sha256(GALLERY_FORMAT.encode())
    for key in ("location_encoder", "gallery"):
        digest.update(files[key].read_bytes())
    return digest.hexdigest()[:16]


def gallery_name(settings: RetrievalSettings) -> str:
    """The gallery's collection: the configured name and the fingerprint of the weights it is built from."""
    return f"{settings.gallery_collection}-{weights_fingerprint()}"


def index_path(settings: RetrievalSettings):
    """Where the gallery's vectors are cached for exact search (named after the weights they come from)."""
    return settings.data_dir / f"{settings.gallery_collection}.{weights_fingerprint()}.npz"


def encode_with_progress(heads: GeoClipHeads, coords: np.ndarray, what: str) -> np.ndarray:
    """The location encoder's vectors of ``coords``, chunk by chunk behind a progress bar (tqdm, on
    stderr when it is a terminal)."""
    from tqdm import tqdm

    parts = []
    with tqdm(total=len(coords), desc=what, unit="points", unit_scale=True, disable=None, leave=False) as bar:
        for start in range(0, len(coords), ENCODE_CHUNK):
            chunk = coords[start : start + ENCODE_CHUNK]
            parts.append(heads.encode_locations(chunk))
            bar.update(len(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, GPS_DIM), np.float32)


def load_gallery_index(settings: RetrievalSettings, heads: GeoClipHeads) -> GalleryIndex:
    """The in-memory gallery for exact search: the cached vectors, or (once) the location encoder's."""
    coords = gallery_coordinates()
    path = index_path(settings)
    arrays = load_index_arrays(path, len(coords))
    if arrays is None:
        logger.warning("encoding the GPS gallery for exact search (%d points, once; later starts reuse %s)", len(coords), path)
        vectors = encode_with_progress(heads, coords, "encoding GeoCLIP's GPS gallery (once)")
        codes = np.array([c or "" for c in country_codes([(float(a), float(b)) for a, b in coords])])
        save_index_arrays(path, vectors, coords, codes)
        arrays = (vectors, coords, codes)
    vectors, stored_coords, countries = arrays
    return GalleryIndex(vectors, stored_coords, countries, heads.scale)


def gallery_ready(settings: RetrievalSettings, store: VectorStore) -> bool:
    """True when the store holds a complete gallery for the installed GeoCLIP weights."""
    return is_complete(store.describe(gallery_name(settings)), weights_fingerprint())


def ensure_gallery(settings: RetrievalSettings, store: VectorStore, heads: GeoClipHeads) -> int:
    """Build the gallery collection unless the store already holds it complete (or another client is
    building it: then wait for that build); return its point count."""
    coords = gallery_coordinates()

    def fill(name: str) -> None:
        from tqdm import tqdm

        codes = country_codes([(float(a), float(b)) for a, b in coords])
        with tqdm(total=len(coords), desc="building the GPS gallery collection (once)", unit="points", disable=None) as bar:
            for start in range(0, len(coords), UPSERT_BATCH):
                chunk = coords[start : start + UPSERT_BATCH]
                vectors = heads.encode_locations(chunk)
                ids = list(range(start, start + len(chunk)))
                payloads = [
                    {"location": {"lat": float(lat), "lon": float(lon)}, "country_code": codes[start + i] or ""}
                    for i, (lat, lon) in enumerate(chunk)
                ]
                store.upsert(name, ids, vectors, payloads)
                bar.update(len(chunk))

    return ensure_built(
        store,
        gallery_name(settings),
        dim=GPS_DIM,
        fingerprint=weights_fingerprint(),
        expected=len(coords),
        fill=fill,
        stall_s=settings.gallery_build_stall_s,
    )
