"""What a fusion model is made of: how its inputs are produced (``FeatureSpec``), its trainable
architecture with the ablation switches (``FusionConfig``) and how it is trained (``TrainConfig``).

All three are stored in every checkpoint, so a checkpoint alone says how to rebuild the model and
how to compute its inputs for a new photo.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

THRESHOLDS_KM: tuple[int, ...] = (1, 25, 200, 750, 2500)
VOID_CLASS = 255
"""Class-map value for "no class" (unlabelled pixels, or no class map at all)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureSpec(_Frozen):
    """How the frozen inputs of the model are computed from a photo (recorded at precompute time)."""

    image_model: str = Field(description="open_clip model name or config-JSON path of the frozen image tower.")
    image_pretrained: str = Field(description="open_clip pretrained tag, checkpoint path, or 'none'.")
    token_grid: int = Field(ge=1, le=64, description="Patch tokens are average-pooled to token_grid x token_grid.")
    token_dim: int = Field(ge=1, description="Width of the (projected) patch tokens.")
    pooled_dim: int = Field(ge=1, description="Width of the pooled CLIP vector.")
    seg_backend: str | None = Field(default=None, description="Segmenter that made the class maps; None = no class maps.")
    seg_model: str | None = None
    seg_labels: tuple[str, ...] = ()
    seg_grid: int = Field(
        default=32, ge=1, le=512, description="Class maps are stored at seg_grid x seg_grid (majority class per cell)."
    )
    text_dim: int | None = Field(default=None, description="Width of the frozen CLIP text features; None = no text.")

    @property
    def num_tokens(self) -> int:
        return self.token_grid * self.token_grid

    @property
    def has_segmentation(self) -> bool:
        return self.seg_backend is not None and bool(self.seg_labels)


class FusionConfig(_Frozen):
    """The trainable part of the model and its ablation switches."""

    dim: int = Field(default=512, ge=8, description="Width of the fusion tokens.")
    embed_dim: int = Field(default=512, ge=8, description="Width of the shared image/GPS embedding space.")
    heads: int = Field(default=8, ge=1)
    layers: int = Field(default=2, ge=0, description="Bidirectional cross-attention layers.")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    use_segmentation: bool = Field(default=True, description="Ablation: False drops the segmentation view entirely.")
    fusion: Literal["cross_attention", "concat"] = Field(
        default="cross_attention", description="Ablation: 'concat' pools each view and concatenates, no attention."
    )
    seg_encoding: Literal["embed", "onehot"] = "embed"
    seg_embed_dim: int = Field(default=32, ge=1, description="Width of the class embeddings (seg_encoding='embed').")
    seg_patch: int = Field(default=8, ge=1, description="Class-map cells per segmentation token side.")
    gps_encoder: Literal["rff", "location_attention"] = Field(
        default="rff",
        description="'rff': summed multi-scale RFF capsules (GeoCLIP/G3); 'location_attention': a Transformer over the scales (TransGeoCLIP).",
    )
    projection: Literal["equal_earth", "mercator"] = "equal_earth"
    sigmas: tuple[float, ...] = (2.0**0, 2.0**4, 2.0**8)
    rff_features: int = Field(default=256, ge=1, description="Random Fourier features per scale (x2 for cos/sin).")
    gps_hidden: int = Field(default=1024, ge=8, description="Width of each scale's MLP.")
    gps_attention_layers: int = Field(default=2, ge=1)
    gps_init: Literal["random", "geoclip"] = Field(
        default="random", description="'geoclip' starts the RFF capsules from GeoCLIP's trained location encoder."
    )
    use_text: bool = Field(
        default=False, description="Add the image<->text and text<->GPS losses (needs text features at precompute)."
    )
    queue_size: int = Field(default=0, ge=0, description="GeoCLIP's queue of past GPS coordinates used as extra negatives.")
    seg_loss_weight: float = Field(default=1.0, ge=0.0)
    text_loss_weight: float = Field(default=1.0, ge=0.0, description="Weight of the fused<->text loss (use_text).")
    text_gps_loss_weight: float = Field(
        default=1.0,
        ge=0.0,
        description="Weight of the text<->GPS loss (use_text): TransGeoCLIP's image-text-GPS joint embedding.",
    )
    init_temperature: float = Field(default=0.07, gt=0.0)
    database_vector: Literal["fused", "fused+clip"] = Field(
        default="fused+clip",
        description="Image-database vectors: the fused embedding, or with the raw CLIP vector beside it (DualGeo).",
    )
    seed: int = Field(default=0, description="Seed of the initial weights and the fixed RFF frequencies.")

    @model_validator(mode="after")
    def _check(self) -> FusionConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")
        if self.gps_encoder == "location_attention" and self.embed_dim % self.heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by heads={self.heads}")
        if not self.sigmas:
            raise ValueError("give at least one RFF scale (sigmas)")
        return self


class TrainConfig(_Frozen):
    """The optimisation: AdamW, linear warm-up then cosine decay, clipping, AMP, checkpoints."""

    epochs: int = Field(default=10, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimiser steps in all.")
    batch_size: int = Field(default=256, ge=2)
    lr: float = Field(default=1e-4, gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    warmup_steps: int = Field(default=500, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    grad_clip: float | None = Field(default=1.0, gt=0.0)
    amp: bool = Field(default=True, description="Mixed precision on CUDA (ignored on CPU).")
    seed: int = 0
    checkpoint_every: int = Field(default=500, ge=1, description="Write the resumable training state every N steps.")
    log_every: int = Field(default=50, ge=1)
    val_split: Literal["id", "author"] = "id"
    val_fraction: float = Field(default=0.01, ge=0.0, lt=1.0)
    val_max: int = Field(default=20000, ge=1, description="At most this many validation rows.")
    val_gallery: str = Field(
        default="geoclip", description="'geoclip' (GeoCLIP's 100K coordinates), 'train', or a CSV of coordinates."
    )
    val_every: int = Field(default=1, ge=1, description="Validate every N epochs (the last epoch always validates).")
    val_gallery_sample: int = Field(default=10_000, ge=0, description="Gallery sample of each validation (0 = all).")
    workers: int = Field(default=2, ge=0, description="Threads reading the next batches ahead.")
