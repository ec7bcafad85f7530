"""The retrieval section of the settings: vector store, collections, image encoder, top-k."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from retrieval_service.core.media_settings import MediaSettings

MAX_TOP_K = 100
"""The one bound on retrieval candidates per list: settings, the CLI's --top-k and the retrieve tool's ``k``."""


class RetrievalSettings(MediaSettings):
    """How photos are embedded and searched."""

    qdrant_url: str | None = Field(default=None, description="Qdrant server/cluster URL; unset = embedded Qdrant under data_dir.")
    qdrant_api_key: str | None = Field(
        default=None, description="API key of the Qdrant server (sent with every request when set)."
    )
    qdrant_shard_number: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Shards of the collections geoagent creates on a server (unset = the server's default).",
    )
    qdrant_replication_factor: int | None = Field(
        default=None, ge=1, le=100, description="Copies of each shard on a cluster (unset = the server's default)."
    )
    qdrant_metadata_ttl_s: float = Field(
        default=10.0, ge=0, description="How long a client caches a collection's size and metadata."
    )
    qdrant_hnsw_m: int = Field(
        default=16,
        ge=4,
        le=128,
        description="Links per node of the HNSW graphs of new collections (more: better recall, more RAM and build time).",
    )
    qdrant_hnsw_ef_construct: int = Field(
        default=128, ge=4, le=4096, description="Candidate list while building the HNSW graphs of new collections."
    )
    qdrant_hnsw_ef: int = Field(
        default=128, ge=1, le=4096, description="Candidate list of an HNSW search (more: better recall, slower search)."
    )
    database_quantization: Literal["int8", "none"] = Field(
        default="int8",
        description="Image-database collections created with Qdrant's scalar int8 quantization ('int8': a quarter of the "
        "RAM of float32 for the searched vectors) or none (float32 only). Fixed when the collection is created.",
    )
    database_quantile: float = Field(
        default=0.99, gt=0.5, le=1.0, description="Quantile of the vector values that sets the int8 range (outliers clip)."
    )
    database_on_disk: bool = Field(
        default=True,
        description="Keep the image database's original float32 vectors on disk (memory-mapped), only the int8 copies in RAM.",
    )
    database_rescore: bool = Field(
        default=True, description="Re-score the int8 candidates of a quantized collection with the original vectors."
    )
    database_oversampling: float = Field(
        default=2.0, ge=1.0, le=16.0, description="A quantized search re-scores this many times k int8 candidates."
    )
    gallery_build_stall_s: float = Field(
        default=120.0, gt=0, description="A gallery build without progress for this long is taken over by a waiting client."
    )
    retrieval_url: str | None = Field(
        default=None, description="A geoagent retrieval service (geoagent serve); set = the tools retrieve over HTTP."
    )
    retrieval_api_key: str | None = Field(
        default=None, description="API key of the retrieval service (its GEOAGENT_SERVICE_API_KEY)."
    )
    retrieval_timeout_s: float = Field(default=120.0, gt=0, description="Per request to the retrieval service.")
    gallery_collection: str = Field(
        default="geoclip_gallery", description="Name stem of the GPS gallery collection (the weights' fingerprint is appended)."
    )
    database_collection: str = Field(
        default="image_database", description="Collection of your image database (geoagent index build)."
    )
    image_model: str = Field(default="ViT-L-14", description="open_clip model name, or a path to an open_clip model config JSON.")
    image_pretrained: str = Field(
        default="openai",
        description="open_clip pretrained tag, a local checkpoint path, or 'none' for random weights (plumbing only).",
    )
    encoder: str = Field(
        default="geoclip",
        description="'geoclip' (CLIP features + GeoCLIP's heads) or 'fusion:PATH' (a checkpoint of geoagent train fusion, or its run folder).",
    )
    fusion_gallery: str = Field(
        default="geoclip",
        description="GPS gallery coordinates of a fusion encoder: 'geoclip' (GeoCLIP's 100K) or a CSV with LAT/LON columns.",
    )
    image_quick_gelu: bool | None = Field(
        default=None, description="Build the CLIP model with QuickGELU; unset = decide from the weights (OpenAI CLIP needs it)."
    )
    batch_size: int = Field(default=32, ge=1, le=4096, description="Images encoded per batch (index build, precompute).")
    encode_batching: bool = Field(
        default=True,
        description="Encode the photos of concurrent requests together (a micro-batcher in front of the image encoder).",
    )
    encode_batch_max: int = Field(default=16, ge=1, le=1024, description="Most photos the micro-batcher encodes in one pass.")
    encode_batch_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="How long the micro-batcher waits for more photos after the first of a batch."
    )
    index_workers: int = Field(
        default=4, ge=1, le=64, description="Threads decoding the next batch's images while one is encoded (index build)."
    )
    index_upserts: int = Field(
        default=2, ge=1, le=32, description="Upsert requests in flight at once while an index build encodes the next batch."
    )
    top_k: int = Field(default=20, ge=1, le=MAX_TOP_K, description="Retrieval candidates per photo.")
    gallery_search: Literal["exact", "hnsw"] = Field(
        default="exact",
        description="How the GPS gallery is searched: 'exact' scores all 100K points (GeoCLIP's own search, with its "
        "softmax probabilities); 'hnsw' uses the Qdrant collection's approximate index (no probabilities).",
    )

    @field_validator("encoder")
    @classmethod
    def _check_encoder(cls, value: str) -> str:
        value = value.strip()
        if value != "geoclip" and not (value.startswith("fusion:") and value[len("fusion:") :].strip()):
            raise ValueError(f"unknown encoder {value!r}: use geoclip or fusion:/path/to/fusion.pt")
        return value

    @property
    def fusion_checkpoint(self) -> Path | None:
        """The fusion checkpoint selected by ``encoder`` (None: the GeoCLIP encoder)."""
        return None if self.encoder == "geoclip" else Path(self.encoder[len("fusion:") :].strip()).expanduser()

    @property
    def embedded_qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"
