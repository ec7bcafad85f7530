"""The GeoCLIP back end (``encoder = "geoclip"``, the default): an open_clip image encoder
(``ImageEncoder``, raw projected CLIP features) under GeoCLIP's image head and location encoder
(``GeoClipHeads``), with GeoCLIP's 100K-coordinate GPS gallery.

The gallery is searched exactly in memory (``GalleryIndex``: GeoCLIP's own search, with its
softmax probabilities), unless ``gallery_search = "hnsw"``: then the Qdrant collection
(fingerprinted by the GeoCLIP weights) is built and searched.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from retrieval_service.retrieval.backends.base import RetrievalBackend
from retrieval_service.retrieval.gallery_index import GalleryIndex
from retrieval_service.retrieval.stores import VectorStore


class GeoClipBackend(RetrievalBackend):
    """CLIP features + GeoCLIP's heads and gallery."""

    family = "geoclip"

    @cached_property
    def encoder(self):  # -> ImageEncoder
        from retrieval_service.retrieval.image_encoder import ImageEncoder
        from retrieval_service.retrieval.model_store import models_dir

        s = self.settings
        return ImageEncoder(
            s.image_model,
            s.image_pretrained,
            s.device,
            s.batch_size,
            models_dir=models_dir(s.data_dir),
            quick_gelu=s.image_quick_gelu,
        )

    @cached_property
    def heads(self):  # -> GeoClipHeads
        from retrieval_service.retrieval.geoclip_heads import GeoClipHeads
        from retrieval_service.retrieval.image_encoder import resolve_device

        return GeoClipHeads(resolve_device(self.settings.device))

    @property
    def gallery_collection(self) -> str:
        from retrieval_service.retrieval.gallery import gallery_name

        return gallery_name(self.settings)

    def build_gallery(self, store: VectorStore) -> None:
        from retrieval_service.retrieval.gallery import ensure_gallery

        ensure_gallery(self.settings, store, self.heads)

    def gallery_ready(self, store: VectorStore) -> bool:
        from retrieval_service.retrieval.gallery import gallery_ready, index_path

        if self.gallery_search == "exact":  # exact search needs only the cached gallery vectors
            return index_path(self.settings).is_file()
        return gallery_ready(self.settings, store)

    @property
    def gallery_search(self) -> Literal["exact", "hnsw"]:
        """GeoCLIP's gallery searched exactly in memory (the default), or the Qdrant collection's
        index with ``GEOAGENT_GALLERY_SEARCH=hnsw``."""
        return self.settings.gallery_search

    def exact_gallery(self) -> GalleryIndex | None:
        if self.gallery_search != "exact":
            return None
        from retrieval_service.retrieval.gallery import load_gallery_index

        return self._kept_index(lambda: load_gallery_index(self.settings, self.heads))
