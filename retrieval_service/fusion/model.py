"""The fusion model: frozen CLIP tokens + segmentation class map -> one embedding beside the GPS
encoder's, trained contrastively (DualGeo's dual view, with token-level fusion).

Image stream: the pooled CLIP vector as a leading token, then the pooled patch tokens, each
projected to ``dim`` with a learned position. Segmentation stream: ``SegEncoder`` tokens. Fusion:
``BidirectionalCrossAttention`` (or, ablated, none: each stream is pooled as it is and the pools
concatenated). The fused embedding is an MLP over [leading token, mean image token, mean
segmentation token]; the segmentation embedding (for the segmentation<->GPS loss) is an MLP over
the mean segmentation token. Every output is L2-normalised. Nothing mixes samples of a batch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion.attention import BidirectionalCrossAttention, masked_mean
from retrieval_service.fusion.config import FeatureSpec, FusionConfig
from retrieval_service.fusion.gps import make_gps_encoder
from retrieval_service.fusion.seg_encoder import SegEncoder

MAX_LOGIT_SCALE = math.log(100.0)


class FusionOutput(NamedTuple):
    fused: torch.Tensor  # (n, embed_dim), unit norm: the photo in the image/GPS space
    seg: torch.Tensor | None  # (n, embed_dim), unit norm: the segmentation view alone
    clip: torch.Tensor  # (n, pooled_dim), unit norm: the frozen CLIP vector


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.GELU(), nn.Linear(hidden, out))


class FusionModel(nn.Module):
    def __init__(self, spec: FeatureSpec, config: FusionConfig) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        if config.use_segmentation and not spec.has_segmentation:
            raise ConfigError(
                "the features hold no class maps, so the segmentation view cannot be trained",
                "precompute with a segmenter (GEOAGENT_SEGMENTER...), or train with --no-segmentation",
            )
        if config.use_text and not spec.text_dim:
            raise ConfigError("the features hold no text features", "precompute with --text, or train without --text")
        dim = config.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.token_in = nn.Linear(spec.token_dim, dim)
            self.pooled_in = nn.Linear(spec.pooled_dim, dim)
            self.image_position = nn.Parameter(torch.randn(1, 1 + spec.num_tokens, dim) * 0.02)
            self.image_norm = nn.LayerNorm(dim)
            self.seg_encoder = SegEncoder(config, len(spec.seg_labels), spec.seg_grid) if config.use_segmentation else None
            use_cross = config.use_segmentation and config.fusion == "cross_attention" and config.layers > 0
            self.cross = BidirectionalCrossAttention(dim, config.heads, config.layers, config.dropout) if use_cross else None
            self.fused_head = _mlp((3 if config.use_segmentation else 2) * dim, dim, config.embed_dim)
            self.seg_head = _mlp(dim, dim, config.embed_dim) if config.use_segmentation else None
            self.text_head = _mlp(spec.text_dim, dim, config.embed_dim) if config.use_text and spec.text_dim else None
            self.gps = make_gps_encoder(config)
            scale = math.log(1.0 / config.init_temperature)
            self.logit_scale_fused = nn.Parameter(torch.tensor(scale))
            self.logit_scale_seg = nn.Parameter(torch.tensor(scale))
            self.logit_scale_text = nn.Parameter(torch.tensor(scale))

    # ------------------------------------------------------------------ image side
    def image_tokens(self, tokens: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        lead = self.pooled_in(pooled.to(self.pooled_in.weight.dtype)).unsqueeze(1)
        patches = self.token_in(tokens.to(self.token_in.weight.dtype))
        return self.image_norm(torch.cat((lead, patches), dim=1) + self.image_position)

    def forward(self, tokens: torch.Tensor, pooled: torch.Tensor, classmap: torch.Tensor | None = None) -> FusionOutput:
        """tokens (n, T, token_dim), pooled (n, pooled_dim), classmap (n, grid, grid) -> FusionOutput."""
        image = self.image_tokens(tokens, pooled)
        parts = [image[:, 0], image[:, 1:].mean(dim=1)]
        seg_vec = None
        if self.seg_encoder is not None:
            if classmap is None:
                raise ConfigError("this fusion model needs a class map for every photo", "pass the segmenter's class maps")
            seg, seg_mask = self.seg_encoder(classmap)
            if self.cross is not None:
                image, seg = self.cross(image, seg, None, seg_mask)
                parts = [image[:, 0], image[:, 1:].mean(dim=1)]
            pooled_seg = masked_mean(seg, seg_mask)
            parts.append(pooled_seg)
            assert self.seg_head is not None
            seg_vec = F.normalize(self.seg_head(pooled_seg), dim=-1)
        fused = F.normalize(self.fused_head(torch.cat(parts, dim=-1)), dim=-1)
        return FusionOutput(fused=fused, seg=seg_vec, clip=F.normalize(pooled.float(), dim=-1))

    # ------------------------------------------------------------------ other modalities
    def encode_gps(self, latlon: torch.Tensor) -> torch.Tensor:
        """(n, 2) lat/lon degrees -> (n, embed_dim), unit norm."""
        return F.normalize(self.gps(latlon), dim=-1)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        if self.text_head is None:
            raise ConfigError("this fusion model has no text branch", "train with --text")
        return F.normalize(self.text_head(text.to(self.image_position.dtype)), dim=-1)

    def scales(self) -> dict[str, torch.Tensor]:
        """The learnable inverse temperatures, clamped to at most 100 as in CLIP."""
        return {name: getattr(self, f"logit_scale_{name}").clamp(max=MAX_LOGIT_SCALE).exp() for name in ("fused", "seg", "text")}

    def database_vector(self, out: FusionOutput) -> torch.Tensor:
        """The image-database vector: fused, or fused beside the CLIP vector (DualGeo), unit norm."""
        if self.config.database_vector == "fused":
            return out.fused
        return F.normalize(torch.cat((out.fused, out.clip), dim=-1), dim=-1)

    @property
    def database_dim(self) -> int:
        return self.config.embed_dim + (self.spec.pooled_dim if self.config.database_vector == "fused+clip" else 0)
