"""Bidirectional token-level cross-attention within ONE image, and masked pooling.

Image tokens attend to the same photo's segmentation tokens and segmentation tokens attend to its
image tokens (two ``nn.MultiheadAttention`` modules, each followed by a residual connection and
LayerNorm, then a feed-forward block, also residual + LayerNorm). Attention runs over each
sample's own token sequence: a photo's embedding never depends on the other photos in its batch
(DualGeo's published fusion attends across the batch instead). Keys marked as padding are never
attended; a sample with no valid key gets no update from that direction (instead of NaNs).
"""

from __future__ import annotations

import torch
from torch import nn


def attend(mha: nn.MultiheadAttention, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of ``query`` over ``keys``; rows whose keys are all padding get zeros."""
    if key_mask is None:
        return mha(query, keys, keys, need_weights=False)[0]
    empty = key_mask.all(dim=1)
    safe = key_mask & ~empty[:, None]
    out = mha(query, keys, keys, key_padding_mask=safe, need_weights=False)[0]
    return out.masked_fill(empty[:, None, None], 0.0)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the non-padding tokens (zeros when a sample has none)."""
    if mask is None:
        return tokens.mean(dim=1)
    keep = (~mask).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))


class CrossAttentionBlock(nn.Module):
    """One layer: image <- segmentation and segmentation <- image, both from the layer's inputs."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.image_from_seg = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.seg_from_image = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_image = nn.LayerNorm(dim)
        self.norm_seg = nn.LayerNorm(dim)
        self.ff_image = _FeedForward(dim, dropout)
        self.ff_seg = _FeedForward(dim, dropout)
        self.norm_image_ff = nn.LayerNorm(dim)
        self.norm_seg_ff = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, image: torch.Tensor, seg: torch.Tensor, image_mask: torch.Tensor | None, seg_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image_update = attend(self.image_from_seg, image, seg, seg_mask)
        seg_update = attend(self.seg_from_image, seg, image, image_mask)
        image = self.norm_image(image + self.dropout(image_update))
        seg = self.norm_seg(seg + self.dropout(seg_update))
        image = self.norm_image_ff(image + self.dropout(self.ff_image(image)))
        seg = self.norm_seg_ff(seg + self.dropout(self.ff_seg(seg)))
        return image, seg


class BidirectionalCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, heads, dropout) for _ in range(layers))

    def forward(
        self, image: torch.Tensor, seg: torch.Tensor, image_mask: torch.Tensor | None = None, seg_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks:
            image, seg = block(image, seg, image_mask, seg_mask)
        return image, seg
