"""The GPS gallery collection: GeoCLIP's 100K coordinates, encoded once by the location encoder.

A second start finds the collection complete (point count and a marker file naming the GeoCLIP
weights it was built from) and does not re-encode. The same vectors are kept beside it as one
``.npz`` file for the exact search of ``gallery_index`` (the default: GeoCLIP scores every gallery
point); the Qdrant collection serves ``GEOAGENT_GALLERY_SEARCH=hnsw``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import lru_cache


import numpy as np

from retrieval_service.core.errors import StoreError
from retrieval_service.retrieval.gallery_index import GalleryIndex, load_index_arrays, save_index_arrays
from retrieval_service.retrieval.geoclip_heads import GPS_DIM, GeoClipHeads, gallery_coordinates, geoclip_files
from retrieval_service.core.geo import country_codes
from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores import VectorStore

logger = logging.getLogger(__name__)

UPSERT_BATCH = 4096
GALLERY_FORMAT = "1"  # bump when the gallery's vectors or payload change, so old builds are rebuilt


@lru_cache(maxsize=1)
def weights_fingerprint() -> str:
    """Hash of the location-encoder weights and gallery file, so a changed wheel triggers a rebuild."""
    files = geoclip_files()
    digest = hashlib.sha256(GALLERY_FORMAT.encode())
    for key in ("location_encoder", "gallery"):
        digest.update(files[key].read_bytes())
    return digest.hexdigest()[:16]


def _marker_path(settings: RetrievalSettings):
    return settings.data_dir / f"{settings.gallery_collection}.built.json"


def index_path(settings: RetrievalSettings):
    """Where the gallery's vectors are cached for exact search (named after the weights they come from)."""
    return settings.data_dir / f"{settings.gallery_collection}.{weights_fingerprint()}.npz"


def load_gallery_index(settings: RetrievalSettings, heads: GeoClipHeads) -> GalleryIndex:
    """The in-memory gallery for exact search: the cached vectors, or (once) the location encoder's."""
    coords = gallery_coordinates()
    path = index_path(settings)
    arrays = load_index_arrays(path, len(coords))
    if arrays is None:
        logger.warning("encoding the GPS gallery for exact search (%d points, once; later starts reuse %s)", len(coords), path)
        vectors = heads.encode_locations(coords)
        codes = np.array([c or "" for c in country_codes([(float(a), float(b)) for a, b in coords])])
        save_index_arrays(path, vectors, coords, codes)
        arrays = (vectors, coords, codes)
    vectors, stored_coords, countries = arrays
    return GalleryIndex(vectors, stored_coords, countries, heads.scale)


def gallery_ready(settings: RetrievalSettings, store: VectorStore) -> bool:
    """True when the gallery collection is complete for the installed GeoCLIP weights."""
    marker = _marker_path(settings)
    if not marker.is_file() or not store.has_collection(settings.gallery_collection):
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    expected = len(gallery_coordinates())
    return meta.get("fingerprint") == weights_fingerprint() and meta.get("count") == expected == store.count(settings.gallery_collection)


def ensure_gallery(settings: RetrievalSettings, store: VectorStore, heads: GeoClipHeads) -> int:
    """Build the gallery collection if it is missing or incomplete; return its point count."""
    name = settings.gallery_collection
    if gallery_ready(settings, store):
        return store.count(name)
    coords = gallery_coordinates()
    with store.write_lock(name):
        if gallery_ready(settings, store):  # another process finished it while we waited
            return store.count(name)
        logger.warning("building the GPS gallery (%d points, once; later starts reuse it)", len(coords))
        started = time.perf_counter()
        if store.has_collection(name):
            store.delete_collection(name)
        store.create_collection(name, GPS_DIM)
        codes = country_codes([(float(a), float(b)) for a, b in coords])
        all_vectors = []
        for start in range(0, len(coords), UPSERT_BATCH):
            chunk = coords[start : start + UPSERT_BATCH]
            vectors = heads.encode_locations(chunk)
            all_vectors.append(vectors)
            ids = list(range(start, start + len(chunk)))
            payloads = [
                {"location": {"lat": float(lat), "lon": float(lon)}, "country_code": codes[start + i] or ""}
                for i, (lat, lon) in enumerate(chunk)
            ]
            store.upsert(name, ids, vectors, payloads)
        store.finish_writes(name)
        count = store.count(name)
        if count != len(coords):
            raise StoreError(f"gallery has {count} points after the build, expected {len(coords)}", "delete the data dir's qdrant folder and retry")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        save_index_arrays(index_path(settings), np.concatenate(all_vectors), coords, [c or "" for c in codes])
        _marker_path(settings).write_text(json.dumps({"fingerprint": weights_fingerprint(), "count": count}))
        logger.warning("GPS gallery built in %.1f s", time.perf_counter() - started)
    return count
