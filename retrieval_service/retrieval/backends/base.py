"""The interface of a retrieval back end: one per encoder family, chosen once from the settings.

A back end owns everything that differs between encoder families, so that the ``Retriever`` is
written once against this interface:

* ``encoder``: photo pixels -> the image-database vector (raw CLIP features for GeoCLIP, the fused
  vector of a fusion checkpoint); loaded on first use;
* ``heads``: that vector -> the photo's GPS-space embedding, and coordinates -> location embeddings;
* the collections: ``gallery_collection`` (the GPS gallery, built by ``build_gallery`` and checked
  by ``gallery_ready``) and ``database_collection`` (the image database; also written into
  ``settings``, which the ``Retriever`` and ``ingest`` use);
* ``exact_gallery()``: the gallery's vectors in memory for exact search with the softmax
  probabilities, or None when the gallery is searched in the store (``gallery_search``);
* ``info()``: what it reports about itself.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from PIL import Image

from retrieval_service.core.types import Candidate
from retrieval_service.retrieval.gallery_index import GalleryIndex
from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores import VectorStore


class ImageEncoderLike(Protocol):
    """Photo pixels -> (n, dim) image-database vectors (not necessarily normalised)."""

    dim: int

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class GpsHead(Protocol):
    """The image/GPS space: encoder vectors -> GPS-space image embeddings, coordinates -> location
    embeddings (both L2-normalised)."""

    def embed_clip_features(self, feats: np.ndarray) -> np.ndarray: ...

    def encode_locations(self, coords: np.ndarray) -> np.ndarray: ...


class RetrievalBackend(ABC):
    """One encoder family behind the ``Retriever``. Constructing one loads nothing heavy; the
    models load on first use of ``encoder``/``heads`` (or ``warm_up``)."""

    family: ClassVar[str]
    """The ``settings.encoder`` family it serves ("geoclip", "fusion")."""

    def __init__(self, settings: RetrievalSettings) -> None:
        self.settings = settings
        self._index: GalleryIndex | None = None
        self._index_lock = threading.Lock()  # threads sharing a back end load (or encode) the gallery once

    # ------------------------------------------------------------------ models
    @property
    @abstractmethod
    def encoder(self) -> ImageEncoderLike:
        """The image encoder (loaded on first use, then kept)."""

    @property
    @abstractmethod
    def heads(self) -> GpsHead:
        """The GPS head and location encoder (loaded on first use, then kept)."""

    def warm_up(self) -> None:
        """Load the models now."""
        _ = self.encoder
        _ = self.heads

    # ------------------------------------------------------------------ collections
    @property
    def database_collection(self) -> str:
        """The store's image database of this encoder."""
        return self.settings.database_collection

    @property
    @abstractmethod
    def gallery_collection(self) -> str:
        """The store's GPS gallery collection of this encoder (fingerprinted by what it is built from)."""

    @abstractmethod
    def build_gallery(self, store: VectorStore) -> None:
        """Build the gallery collection unless the store holds it complete (or wait for the client
        building it)."""

    @abstractmethod
    def gallery_ready(self, store: VectorStore) -> bool:
        """Whether the gallery can be searched without building anything first (exact search: its
        cached vectors; else the store's complete collection)."""

    # ------------------------------------------------------------------ exact search
    @property
    def gallery_search(self) -> Literal["exact", "hnsw"]:
        """How the gallery is searched: "exact" in memory (``exact_gallery``) or "hnsw" in the store."""
        return "hnsw"

    def exact_gallery(self) -> GalleryIndex | None:
        """The gallery's vectors in memory for exact search with probabilities (loaded on first
        call, then kept), or None when this back end searches the store's collection."""
        return None

    def _kept_index(self, load: Callable[[], GalleryIndex]) -> GalleryIndex:
        """The in-memory gallery, loaded (or encoded) once by ``load`` however many threads ask."""
        if self._index is None:
            with self._index_lock:
                if self._index is None:
                    self._index = load()
        return self._index

    # ------------------------------------------------------------------ text
    def place_texts(self, gps: np.ndarray, coords: Sequence[tuple[float, float]], limit: int) -> list[Candidate]:
        """Descriptions of the places near ``coords`` scored against the photo's GPS-space vector
        ``gps`` by a text branch (source "text", softmax probabilities); none without one."""
        del gps, coords, limit
        return []

    # ------------------------------------------------------------------ report
    def info(self) -> dict[str, Any]:
        """The encoder, its models and device, and how the gallery is searched (loads nothing heavy)."""
        from retrieval_service.retrieval.image_encoder import resolve_device

        return {
            "gallery_search": self.gallery_search,
            "encoder": self.settings.encoder,
            "image_model": self.settings.image_model,
            "image_pretrained": self.settings.image_pretrained,
            "device": str(resolve_device(self.settings.device)),
        }
