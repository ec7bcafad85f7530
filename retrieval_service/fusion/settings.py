"""The fusion section of the settings: defaults of ``geoagent train`` (each a ``GEOAGENT_FUSION_*``
variable or a key of the TOML file; the command's own options win)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from retrieval_service.core.settings import CoreSettings


class FusionSettings(CoreSettings):
    """How the fusion model is precomputed and trained when the command line does not say."""

    fusion_batch_size: int = Field(default=256, ge=2, description="Training batch size (InfoNCE negatives per step).")
    fusion_epochs: int = Field(default=10, ge=1, description="Passes over the training rows.")
    fusion_lr: float = Field(
        default=1e-4, gt=0.0, description="Peak learning rate of AdamW (after the warm-up, then cosine decay)."
    )
    fusion_warmup_steps: int = Field(default=500, ge=0, description="Steps of linear learning-rate warm-up.")
    fusion_checkpoint_every: int = Field(default=500, ge=1, description="Steps between resumable training states.")
    fusion_val_gallery: str = Field(default="geoclip", description="'geoclip', 'train' or a CSV of LAT/LON coordinates.")
    fusion_val_every: int = Field(default=1, ge=1, description="Validate every N epochs (the last epoch always validates).")
    fusion_val_gallery_sample: int = Field(
        default=10_000,
        ge=0,
        description="Validations score against a fixed sample of this many gallery coordinates (re-encoding GeoCLIP's "
        "100K takes minutes on a CPU); the last one also against the whole gallery. 0 = always the whole gallery.",
    )
    fusion_workers: int = Field(
        default=4,
        ge=0,
        description="DataLoader processes decoding photos (precompute), threads reading batches ahead (training).",
    )
    fusion_cache_dir: Path | None = Field(
        default=None,
        description="Local cache of features read from an fsspec URL (s3://...); unset = <data dir>/cache/features.",
    )
    fusion_shard_size: int = Field(default=4096, ge=16, description="Rows per precomputed feature shard.")
    fusion_token_grid: int = Field(
        default=4, ge=1, le=64, description="CLIP patch tokens are pooled to this grid (4 = 16 tokens)."
    )
    fusion_seg_grid: int = Field(default=32, ge=1, le=512, description="Class maps are stored at this grid.")

    @property
    def features_cache(self) -> Path:
        return self.fusion_cache_dir or self.data_dir / "cache" / "features"
