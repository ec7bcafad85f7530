"""The fusion back end (``encoder = "fusion:PATH"``): a trained fusion checkpoint
(``FusionEncoder``) is both the image encoder (photo -> fused database vector) and the GPS head (its
own GPS encoder), with its own collections: the image database and the GPS gallery are named by the
checkpoint's fingerprint (``fusion.gallery``), so they never mix with GeoCLIP's or another
checkpoint's. The gallery is searched exactly in memory by default (``GalleryIndex``: every gallery
point scored with the checkpoint's own temperature, so the candidates carry the softmax probabilities
the GeoCLIP mode gives), or in the store's collection with ``GEOAGENT_GALLERY_SEARCH=hnsw``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Literal

import numpy as np

from retrieval_service.core.types import Candidate
from retrieval_service.retrieval.backends.base import RetrievalBackend
from retrieval_service.retrieval.gallery_index import GalleryIndex
from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores import VectorStore


class FusionBackend(RetrievalBackend):
    """A fusion checkpoint as encoder and GPS head, with its fingerprinted collections."""

    family = "fusion"

    def __init__(self, settings: RetrievalSettings) -> None:
        from retrieval_service.fusion.checkpoint import fingerprint
        from retrieval_service.fusion.gallery import database_name

        if settings.fusion_checkpoint is None:
            raise ValueError(f"the fusion back end needs encoder='fusion:PATH', not {settings.encoder!r}")
        self.checkpoint = settings.fusion_checkpoint
        self.fingerprint = fingerprint(self.checkpoint)  # of the file (WeightsNotFoundError when it is missing)
        super().__init__(settings.model_copy(update={"database_collection": database_name(settings, self.fingerprint)}))

    @cached_property
    def encoder(self):  # -> FusionEncoder
        from retrieval_service.fusion.encoder import FusionEncoder

        s = self.settings
        return FusionEncoder(self.checkpoint, s, s.device, s.batch_size)

    @property
    def heads(self):  # -> FusionEncoder: a fusion model is its own GPS head
        return self.encoder

    @property
    def gallery_collection(self) -> str:
        from retrieval_service.fusion.gallery import gallery_name

        return gallery_name(self.settings, self.fingerprint)

    def build_gallery(self, store: VectorStore) -> None:
        from retrieval_service.fusion.gallery import ensure_gallery

        ensure_gallery(self.settings, store, self.encoder)

    def gallery_ready(self, store: VectorStore) -> bool:
        from retrieval_service.fusion.gallery import gallery_ready, index_path

        if self.gallery_search == "exact":  # exact search needs only the cached gallery vectors
            return index_path(self.settings, self.fingerprint).is_file()
        return gallery_ready(self.settings, store, self.fingerprint)

    @property
    def gallery_search(self) -> Literal["exact", "hnsw"]:
        """The checkpoint's gallery searched exactly in memory (the default), or the store's HNSW index."""
        return self.settings.gallery_search

    def place_texts(self, gps: np.ndarray, coords: Sequence[tuple[float, float]], limit: int) -> list[Candidate]:
        if not self.encoder.has_text:
            return []
        from retrieval_service.fusion.descriptions import text_candidates

        return text_candidates(self.encoder, gps, coords, limit)

    def exact_gallery(self) -> GalleryIndex | None:
        if self.gallery_search != "exact":
            return None
        from retrieval_service.fusion.gallery import load_gallery_index

        return self._kept_index(lambda: load_gallery_index(self.settings, self.encoder))
