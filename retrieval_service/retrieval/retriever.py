"""``Retriever``: photo -> GPS-gallery candidates and image-database neighbours.

Models and stores load lazily on first use. CLIP features of each image are cached (a cachetools
LRU under one lock, keyed by ``image_ref`` plus, for files, size and mtime) so that search + verify
on one photo encode it once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from cachetools import LRUCache
from PIL import Image

from retrieval_service.core.errors import DatasetError, StoreError
from retrieval_service.core.media import ImageInput, is_url, image_ref, load_image
from retrieval_service.core.types import Candidate, GeoFilter, RetrievalResult
from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores import Hit, Query, VectorStore, make_store

logger = logging.getLogger(__name__)

CACHE_SIZE = 64


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def _cache_key(src: ImageInput) -> str:
    ref = image_ref(src)
    if isinstance(src, (str, os.PathLike)) and not is_url(src):
        try:
            stat = Path(src).expanduser().stat()
            return f"{Path(src).expanduser().resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        except OSError:
            return ref
    return ref


class Retriever:
    """Image -> GPS retrieval over the GeoCLIP gallery and an optional image database."""

    def __init__(self, settings: RetrievalSettings, *, store: VectorStore | None = None) -> None:
        self._fusion_fp: str | None = None
        if settings.fusion_checkpoint is not None:  # a fusion encoder: its own, fingerprinted collections
            from retrieval_service.fusion.checkpoint import fingerprint
            from retrieval_service.fusion.gallery import database_name

            self._fusion_fp = fingerprint(settings.fusion_checkpoint)
            settings = settings.model_copy(update={"database_collection": database_name(settings, self._fusion_fp)})
        self.settings = settings
        self._store = store
        self._cache: LRUCache[str, np.ndarray] = LRUCache(maxsize=CACHE_SIZE)
        self._lock = threading.RLock()
        self._gallery_checked = False

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> "Retriever":
        return cls(settings)

    # ------------------------------------------------------------------ lazy parts
    @property
    def store(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                self._store = make_store(self.settings)
            return self._store

    @cached_property
    def encoder(self):  # -> ImageEncoder | FusionEncoder
        from retrieval_service.retrieval.image_encoder import ImageEncoder

        if self._fusion_fp is not None:
            from retrieval_service.fusion.encoder import FusionEncoder

            return FusionEncoder(self.settings.fusion_checkpoint, self.settings, self.settings.device, self.settings.batch_size)
        from retrieval_service.retrieval.model_store import models_dir

        return ImageEncoder(self.settings.image_model, self.settings.image_pretrained, self.settings.device, self.settings.batch_size,
                            models_dir=models_dir(self.settings.data_dir), quick_gelu=self.settings.image_quick_gelu)

    @cached_property
    def heads(self):  # -> GeoClipHeads | FusionEncoder (a fusion model is its own GPS head)
        if self._fusion_fp is not None:
            return self.encoder
        from retrieval_service.retrieval.geoclip_heads import GeoClipHeads
        from retrieval_service.retrieval.image_encoder import resolve_device

        return GeoClipHeads(resolve_device(self.settings.device))

    @cached_property
    def gallery_index(self):  # -> GalleryIndex
        """The gallery's vectors in memory for exact search and GeoCLIP's softmax."""
        from retrieval_service.retrieval.gallery import load_gallery_index

        with self._lock:
            return load_gallery_index(self.settings, self.heads)

    @property
    def exact_gallery(self) -> bool:
        """GeoCLIP's gallery searched exactly in memory (the default); a fusion encoder's gallery and
        ``GEOAGENT_GALLERY_SEARCH=hnsw`` use the Qdrant collection's index."""
        return self.settings.gallery_search == "exact" and self._fusion_fp is None

    @property
    def image_dim(self) -> int:
        return self.encoder.dim

    def _ensure_gallery(self) -> None:
        if self.exact_gallery:
            _ = self.gallery_index
            return
        if self._gallery_checked:
            return
        with self._lock:  # threads sharing this retriever build the gallery once, not concurrently
            if not self._gallery_checked:
                from retrieval_service.retrieval.gallery import ensure_gallery

                if self._fusion_fp is not None:
                    from retrieval_service.fusion.gallery import ensure_gallery as ensure_fusion_gallery

                    ensure_fusion_gallery(self.settings, self.store, self.encoder)
                else:
                    ensure_gallery(self.settings, self.store, self.heads)
                self._gallery_checked = True

    @property
    def gallery_collection(self) -> str:
        """The store's name of the gallery collection (fingerprinted by the GeoCLIP weights, or by the
        fusion checkpoint and its gallery coordinates)."""
        from retrieval_service.retrieval.gallery import gallery_name

        if self._fusion_fp is not None:
            from retrieval_service.fusion.gallery import gallery_name as fusion_gallery_name

            return fusion_gallery_name(self.settings, self._fusion_fp)
        return gallery_name(self.settings)

    def warm_up(self) -> None:
        """Load the image encoder, the GeoCLIP heads and the gallery now, so that missing weights
        or an unusable store surface as one clear error before any photo is processed."""
        _ = self.encoder
        _ = self.heads
        self._ensure_gallery()

    # ------------------------------------------------------------------ encoding
    def encode_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised CLIP features of already-loaded images (no caching)."""
        return _normalise(self.encoder.encode(list(images)))

    def _raw_features(self, images: Sequence[ImageInput]) -> np.ndarray:
        keys = [_cache_key(src) for src in images]
        found: dict[str, np.ndarray] = {}
        with self._lock:  # one snapshot of the hits: later evictions cannot lose them
            for key in keys:
                if key not in found and key in self._cache:
                    found[key] = self._cache[key]
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            first_of: dict[str, int] = {}
            for i in missing:  # a photo given twice is encoded once
                first_of.setdefault(keys[i], i)
            firsts = list(first_of.values())
            loaded = [load_image(images[i], self.settings) for i in firsts]
            feats = self.encoder.encode(loaded)
            with self._lock:
                for i, feat in zip(firsts, feats):
                    found[keys[i]] = feat
                    self._cache[keys[i]] = feat
        rows = [found[key] for key in keys]
        if not rows:
            return np.zeros((0, self.image_dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32)

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """(n, D) L2-normalised CLIP features."""
        return _normalise(self._raw_features(images))

    def gps_embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """(n, 512) GeoCLIP image-head embeddings, L2-normalised. ModelMismatchError for a non-768-d backbone."""
        return self.heads.embed_clip_features(self._raw_features(images))

    def encode_locations(self, coords: Sequence[tuple[float, float]]) -> np.ndarray:
        """(n, 512) L2-normalised location embeddings; coordinates are validated."""
        arr = np.asarray(list(coords), dtype=np.float64).reshape(-1, 2)
        if len(arr) and (np.abs(arr[:, 0]).max() > 90 or np.abs(arr[:, 1]).max() > 180 or not np.isfinite(arr).all()):
            raise DatasetError("coordinates out of range", "give (lat, lon) pairs with -90 <= lat <= 90 and -180 <= lon <= 180")
        return self.heads.encode_locations(arr.astype(np.float32))

    # ------------------------------------------------------------------ search
    def has_database(self) -> bool:
        """Whether the image database holds points (one cached description on a server)."""
        info = self.store.describe(self.settings.database_collection)
        return info is not None and info.points > 0

    @staticmethod
    def _candidates(hits: list[Hit], source: str, *, negate: bool = False, mark: dict[str, Any] | None = None) -> list[Candidate]:
        """Candidates from store hits; ``mark`` is added to each payload (e.g. ``filtered``)."""
        out = []
        for hit in hits:
            loc = hit.payload.get("location") or {}
            if "lat" not in loc or "lon" not in loc:
                continue
            payload = {**{k: v for k, v in hit.payload.items() if k != "location"}, **(mark or {})}
            out.append(
                Candidate(lat=loc["lat"], lon=loc["lon"], score=-hit.score if negate else hit.score, source=source, payload=payload)  # type: ignore[arg-type]
            )
        return out

    def search(
        self,
        image: ImageInput,
        *,
        k_gallery: int = 10,
        k_database: int = 10,
        geo_filter: GeoFilter | None = None,
        dissimilar: int = 0,
    ) -> RetrievalResult:
        """Top-k gallery candidates and database neighbours for one photo, optionally geo-filtered.

        ``dissimilar`` > 0 also returns the least similar database images (searched with the negated
        query, as G3/Img2Loc use them as negative context); without a database they come from the
        gallery. Their score is the cosine similarity to the photo (negative, lowest first).
        """
        for name, value in (("k_gallery", k_gallery), ("k_database", k_database), ("dissimilar", dissimilar)):
            if not 0 <= value <= 1000:
                raise StoreError(f"{name}={value} is out of range", f"pass 0 <= {name} <= 1000")
        result = RetrievalResult(geo_filter=geo_filter)
        # candidates of a geo-filtered ("zoom") search say so: they were selected for a hypothesis
        # and the decision does not count them as support for it
        mark = {"filtered": True} if geo_filter is not None else {}
        has_db = bool(k_database or dissimilar) and self.has_database()
        gallery: list[tuple[str, Query]] = []  # (role, query): one batch request per collection
        if k_gallery or (dissimilar and not has_db):
            self._ensure_gallery()
            gps = self.gps_embed_images([image])[0]
            if self.exact_gallery:  # GeoCLIP's own search: every gallery point scored, softmax probabilities
                index = self.gallery_index
                if k_gallery:
                    hits, logp = index.search(gps, k_gallery, geo_filter)
                    result.gallery = index.candidates(hits, **mark)
                    if geo_filter is None:
                        result.gallery_rest = index.rest(logp, hits.indices, index.scores(gps))
                if dissimilar and not has_db:
                    low, _ = index.search(gps, dissimilar, geo_filter, lowest=True)
                    result.dissimilar = index.candidates(low)
            else:
                if k_gallery:
                    gallery.append(("gallery", Query(gps, k_gallery, geo_filter)))
                if dissimilar and not has_db:
                    gallery.append(("dissimilar", Query(-gps, dissimilar, geo_filter)))
        database: list[tuple[str, Query]] = []
        if has_db:
            clip = self.embed_images([image])[0]
            name = self.settings.database_collection
            if self.store.dim(name) != clip.shape[0]:
                raise StoreError(
                    f"the image database holds {self.store.dim(name)}-d vectors but the image model gives {clip.shape[0]}-d",
                    "use the image model the database was built with, or rebuild it (geoagent index build)",
                )
            if k_database:
                database.append(("database", Query(clip, k_database, geo_filter)))
            if dissimilar:
                database.append(("dissimilar", Query(-clip, dissimilar, geo_filter)))
        for collection, source, batch in ((self.gallery_collection, "gallery", gallery),
                                          (self.settings.database_collection, "database", database)):
            if not batch:
                continue
            hits = self.store.search_batch(collection, [q for _, q in batch])
            for (role, _), found in zip(batch, hits):
                dissimilar_role = role == "dissimilar"
                setattr(result, role, self._candidates(found, source, negate=dissimilar_role, mark=None if dissimilar_role else mark))
        return result

    def verify(self, image: ImageInput, coords: Sequence[tuple[float, float]]) -> list[float]:
        """Cosine similarity between the photo's GeoCLIP embedding and each coordinate's location embedding."""
        if not coords:
            return []
        gps = self.gps_embed_images([image])[0]
        return [float(s) for s in self.encode_locations(coords) @ gps]

    def info(self) -> dict[str, Any]:
        """Collections, counts, model names, device (loads nothing heavy)."""
        from retrieval_service.retrieval.image_encoder import resolve_device

        store = self.store
        collections: dict[str, Any] = {}
        for name in (self.gallery_collection, self.settings.database_collection):
            info = store.describe(name, fresh=True)
            collections[name] = None if info is None else {"points": store.count(name), "dim": info.dim}
        return {
            "data_dir": str(self.settings.data_dir),
            "store": store.info(),
            "collections": collections,
            "gallery_ready": self._gallery_ready(),
            "gallery_search": "exact" if self.exact_gallery else "hnsw",
            "encoder": self.settings.encoder,
            "image_model": self.settings.image_model,
            "image_pretrained": self.settings.image_pretrained,
            "device": str(resolve_device(self.settings.device)),
        }

    def _gallery_ready(self) -> bool:
        from retrieval_service.retrieval.gallery import gallery_ready, index_path

        if self.exact_gallery:  # exact search needs only the cached gallery vectors
            return index_path(self.settings).is_file()

        if self._fusion_fp is not None:
            from retrieval_service.fusion.gallery import gallery_ready as fusion_gallery_ready

            return fusion_gallery_ready(self.settings, self.store, self._fusion_fp)
        return gallery_ready(self.settings, self.store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
