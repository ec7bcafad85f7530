"""``Retriever``: photo -> GPS-gallery candidates and image-database neighbours.

Written once against a ``RetrievalBackend`` (``retrieval.backends``), chosen from the settings: the
back end owns the encoder family's models, collections and gallery search; the Retriever owns the
store (opened lazily), the feature cache, search, verify and the embeddings.

Photos come in resolved: a ``Photo`` (``core.photo``: a checked local file and its content hash,
made once at the API boundary), or a PIL image already decoded by the caller. The Retriever
decodes a Photo (``photo.decode``) and never resolves one. Features of each image are cached (a
cachetools LRU under one lock, keyed by the photo's content hash, or a PIL image's pixel hash) so
that search + verify on one photo decode and encode it once. Concurrent callers' photos are encoded
together by a micro-batcher in front of the back end's encoder (``batcher.EncodeBatcher``;
``encode_batching``, ``encode_batch_max``, ``encode_batch_wait_ms``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from cachetools import LRUCache
from PIL import Image

from retrieval_service.core.errors import DatasetError, StoreError
from retrieval_service.core.photo import Photo
from retrieval_service.core.types import Candidate, GeoFilter, RetrievalResult
from retrieval_service.retrieval.backends import RetrievalBackend, make_backend
from retrieval_service.retrieval.batcher import EncodeBatcher
from retrieval_service.retrieval.gallery_index import GalleryIndex
from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores import Hit, Query, VectorStore, make_store

logger = logging.getLogger(__name__)

CACHE_SIZE = 64
PIXELS_PREFIX = "pixels:"

RetrieverImage = Photo | Image.Image
"""What the Retriever takes: a resolved ``Photo``, or an already-decoded PIL image (used as its pixels are)."""


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def pixel_key(img: Image.Image) -> str:
    """A decoded image's identity: the hash of its size and RGB pixels."""
    rgb = _rgb(img)
    digest = hashlib.sha256(f"{rgb.size[0]}x{rgb.size[1]}".encode())
    digest.update(rgb.tobytes())
    return PIXELS_PREFIX + digest.hexdigest()


def _not_resolved(image: Any) -> TypeError:
    return TypeError(
        f"the Retriever takes a Photo or a decoded PIL image, not {type(image).__name__}: "
        "resolve photo inputs once with Photo.resolve(src, settings.cache_dir, settings)"
    )


def _check(image: Any) -> None:
    if not isinstance(image, (Photo, Image.Image)):
        raise _not_resolved(image)


def _cache_key(image: RetrieverImage) -> str:
    """A Photo by its content (``photo.key``), a PIL image by its pixels."""
    if isinstance(image, Photo):
        return image.key
    if isinstance(image, Image.Image):
        return pixel_key(image)
    raise _not_resolved(image)


class Retriever:
    """Image -> GPS retrieval over the GPS gallery and an optional image database.

    ``backend`` (default: ``make_backend(settings)``, the configured encoder's) is the one place the
    encoder family matters; ``self.settings`` are the back end's (its database collection).
    """

    def __init__(
        self, settings: RetrievalSettings, *, store: VectorStore | None = None, backend: RetrievalBackend | None = None
    ) -> None:
        self.backend = backend or make_backend(settings)
        self.settings = self.backend.settings  # with the back end's database collection
        self._store = store
        self._cache: LRUCache[str, np.ndarray] = LRUCache(maxsize=CACHE_SIZE)
        self._lock = threading.RLock()
        self._gallery_checked = False
        self._batcher: EncodeBatcher | None = None

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> Retriever:
        return cls(settings)

    # ------------------------------------------------------------------ lazy parts
    @property
    def store(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                self._store = make_store(self.settings)
            return self._store

    @property
    def encoder(self):  # -> the back end's image encoder (loaded on first use)
        return self.backend.encoder

    @property
    def heads(self):  # -> the back end's GPS head and location encoder (loaded on first use)
        return self.backend.heads

    @property
    def image_dim(self) -> int:
        return self.encoder.dim

    @property
    def gallery_collection(self) -> str:
        """The store's name of the back end's gallery collection."""
        return self.backend.gallery_collection

    def _ensure_gallery(self) -> GalleryIndex | None:
        """The gallery ready to search: the back end's exact in-memory index, or None once the
        store's collection is built (checked once per Retriever)."""
        index = self.backend.exact_gallery()
        if index is not None or self._gallery_checked:
            return index
        with self._lock:  # threads sharing this retriever build the gallery once, not concurrently
            if not self._gallery_checked:
                self.backend.build_gallery(self.store)
                self._gallery_checked = True
        return None

    def warm_up(self) -> None:
        """Load the image encoder, the GPS head and the gallery now, so that missing weights or an
        unusable store surface as one clear error before any photo is processed."""
        self.backend.warm_up()
        self._ensure_gallery()

    # ------------------------------------------------------------------ encoding
    def encode_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised encoder features of already-decoded images (no caching)."""
        return _normalise(self.encoder.encode(list(images)))

    def _encode(self, pixels: list[Image.Image]) -> np.ndarray:
        """The encoder's raw features, through the micro-batcher unless ``encode_batching`` is off."""
        if not self.settings.encode_batching:
            return self.encoder.encode(pixels)
        with self._lock:
            if self._batcher is None:
                self._batcher = EncodeBatcher(
                    lambda images: self.encoder.encode(images),
                    max_batch=self.settings.encode_batch_max,
                    max_wait_s=self.settings.encode_batch_wait_ms / 1000,
                )
            batcher = self._batcher
        return batcher.encode(pixels)

    def _pixels(self, image: RetrieverImage) -> Image.Image:
        """RGB pixels: a Photo decoded (it was checked when it was resolved), a PIL image as it is."""
        if isinstance(image, Photo):
            return image.decode(self.settings)
        if isinstance(image, Image.Image):
            return _rgb(image)
        raise _not_resolved(image)

    def _raw_features(self, images: Sequence[RetrieverImage]) -> np.ndarray:
        keys = [_cache_key(image) for image in images]
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
            feats = self._encode([self._pixels(images[i]) for i in firsts])
            with self._lock:
                for i, feat in zip(firsts, feats, strict=False):
                    found[keys[i]] = feat
                    self._cache[keys[i]] = feat
        rows = [found[key] for key in keys]
        if not rows:
            return np.zeros((0, self.image_dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32)

    def embed_images(self, images: Sequence[RetrieverImage]) -> np.ndarray:
        """(n, D) L2-normalised image-database vectors (CLIP features, or a fusion model's)."""
        return _normalise(self._raw_features(images))

    def gps_embed_images(self, images: Sequence[RetrieverImage]) -> np.ndarray:
        """(n, d) L2-normalised GPS-space embeddings (GeoCLIP's image head: 512-d; ModelMismatchError
        for a non-768-d backbone)."""
        return self.heads.embed_clip_features(self._raw_features(images))

    def encode_locations(self, coords: Sequence[tuple[float, float]]) -> np.ndarray:
        """(n, d) L2-normalised location embeddings; coordinates are validated."""
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
    def _candidates(hits: list[Hit], source: str, *, negate: bool = False, filtered: bool = False) -> list[Candidate]:
        """Candidates from store hits (``filtered``: found by a geo-filtered search)."""
        out = []
        for hit in hits:
            loc = hit.payload.get("location") or {}
            if "lat" not in loc or "lon" not in loc:
                continue
            payload = {k: v for k, v in hit.payload.items() if k != "location"}
            out.append(
                Candidate(
                    lat=loc["lat"],
                    lon=loc["lon"],
                    score=-hit.score if negate else hit.score,
                    source=source,
                    filtered=filtered,
                    payload=payload,
                )
            )  # type: ignore[arg-type]
        return out

    def search(
        self,
        image: RetrieverImage,
        *,
        k_gallery: int | None = None,
        k_database: int | None = None,
        geo_filter: GeoFilter | None = None,
        dissimilar: int = 0,
    ) -> RetrievalResult:
        """Top-k gallery candidates and database neighbours for one photo, optionally geo-filtered
        (k: the ``top_k`` setting unless given).

        ``dissimilar`` > 0 also returns the least similar database images (searched with the negated
        query, as G3/Img2Loc use them as negative context); without a database they come from the
        gallery. Their score is the cosine similarity to the photo (negative, lowest first). With a
        text branch (a fusion checkpoint trained with text) and exact gallery search, ``text`` holds
        the towns near the gallery candidates scored by their descriptions.
        """
        k_gallery = self.settings.top_k if k_gallery is None else k_gallery
        k_database = self.settings.top_k if k_database is None else k_database
        for name, value in (("k_gallery", k_gallery), ("k_database", k_database), ("dissimilar", dissimilar)):
            if not 0 <= value <= 1000:
                raise StoreError(f"{name}={value} is out of range", f"pass 0 <= {name} <= 1000")
        _check(image)  # a photo input that was not resolved is refused before any work
        result = RetrievalResult(geo_filter=geo_filter)
        # candidates of a geo-filtered ("zoom") search say so: they were selected for a hypothesis
        # and the decision does not count them as support for it
        filtered = geo_filter is not None
        has_db = bool(k_database or dissimilar) and self.has_database()
        gallery: list[tuple[str, Query]] = []  # (role, query): one batch request per collection
        if k_gallery or (dissimilar and not has_db):
            index = self._ensure_gallery()
            gps = self.gps_embed_images([image])[0]
            if index is not None:  # exact search: every gallery point scored, softmax probabilities
                if k_gallery:
                    hits, logp = index.search(gps, k_gallery, geo_filter)
                    result.gallery = index.candidates(hits, filtered=filtered)
                    if geo_filter is None:
                        result.gallery_rest = index.rest(logp, hits.indices, index.scores(gps))
                if dissimilar and not has_db:
                    low, _ = index.search(gps, dissimilar, geo_filter, lowest=True)
                    result.dissimilar = index.candidates(low)
                if k_gallery and geo_filter is None:  # a text branch scores the places near the candidates
                    result.text = self.backend.place_texts(gps, [(c.lat, c.lon) for c in result.gallery], k_gallery)
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
        for collection, source, batch in (
            (self.gallery_collection, "gallery", gallery),
            (self.settings.database_collection, "database", database),
        ):
            if not batch:
                continue
            hits = self.store.search_batch(collection, [q for _, q in batch])
            for (role, _), found in zip(batch, hits, strict=False):
                dissimilar_role = role == "dissimilar"
                setattr(
                    result,
                    role,
                    self._candidates(found, source, negate=dissimilar_role, filtered=filtered and not dissimilar_role),
                )
        return result

    def verify(self, image: RetrieverImage, coords: Sequence[tuple[float, float]]) -> list[float]:
        """Cosine similarity between the photo's GPS-space embedding and each coordinate's location embedding."""
        _check(image)
        if not coords:
            return []
        gps = self.gps_embed_images([image])[0]
        return [float(s) for s in self.encode_locations(coords) @ gps]

    def info(self) -> dict[str, Any]:
        """Collections, counts, model names, device (loads nothing heavy)."""
        store = self.store
        collections: dict[str, Any] = {}
        for name in (self.gallery_collection, self.settings.database_collection):
            info = store.describe(name, fresh=True)
            collections[name] = None if info is None else {"points": store.count(name), "dim": info.dim}
        return {
            "data_dir": str(self.settings.data_dir),
            "store": store.info(),
            "collections": collections,
            "gallery_ready": self.backend.gallery_ready(store),
            **self.backend.info(),
        }

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self._store is not None:
            self._store.close()
