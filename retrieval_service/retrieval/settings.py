"""The retrieval section of the settings: vector store, collections, image encoder, top-k."""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import Field

from retrieval_service.core.settings import CoreSettings

MAX_TOP_K = 1000


class RetrievalSettings(CoreSettings):
    """How photos are embedded and searched."""

    qdrant_url: str | None = Field(default=None, description="Qdrant server/cluster URL; unset = embedded Qdrant under data_dir.")
    qdrant_api_key: str | None = None
    gallery_collection: str = "geoclip_gallery"
    database_collection: str = "image_database"
    image_model: str = Field(default="ViT-L-14", description="open_clip model name, or a path to an open_clip model config JSON.")
    image_pretrained: str = Field(
        default="openai",
        description="open_clip pretrained tag, a local checkpoint path, or 'none' for random weights (plumbing only).",
    )
    batch_size: int = Field(default=32, ge=1, le=4096)
    top_k: int = Field(default=20, ge=1, le=MAX_TOP_K, description="Retrieval candidates per photo.")
    gallery_search: Literal["exact", "hnsw"] = Field(
        default="exact",
        description="How the GPS gallery is searched: 'exact' scores all 100K points (GeoCLIP's own search, with its "
        "softmax probabilities); 'hnsw' uses the Qdrant collection's approximate index (no probabilities).",
    )

    @property
    def embedded_qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"
