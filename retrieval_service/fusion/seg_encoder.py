"""The segmentation view: a (grid, grid) class map -> segmentation tokens and their padding mask.

Classes are embedded (a learned vector per class) or one-hot, never read as intensities; a small
convolutional stem turns each ``seg_patch`` x ``seg_patch`` block of cells into one token with a
learned position. A token whose cells are all ``VOID_CLASS`` is masked: no image token attends to
it and it is left out of pooling. A photo without any class map is all void, hence all masked.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion.config import VOID_CLASS, FusionConfig


class SegEncoder(nn.Module):
    def __init__(self, config: FusionConfig, num_classes: int, grid: int) -> None:
        super().__init__()
        if grid % config.seg_patch:
            raise ConfigError(
                f"the class-map grid ({grid}) is not a multiple of seg_patch ({config.seg_patch})",
                "pick seg_patch dividing the precomputed seg_grid",
            )
        self.num_classes = num_classes
        self.patch = config.seg_patch
        self.encoding = config.seg_encoding
        if self.encoding == "embed":
            self.embed = nn.Embedding(num_classes + 1, config.seg_embed_dim, padding_idx=num_classes)
            channels = config.seg_embed_dim
        else:
            channels = num_classes
        hidden = max(config.dim // 2, 8)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, config.dim, kernel_size=self.patch, stride=self.patch),
        )
        self.tokens = (grid // self.patch) ** 2
        self.position = nn.Parameter(torch.randn(1, self.tokens, config.dim) * 0.02)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, classmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, grid, grid) integer class ids -> tokens (n, T, dim) and mask (n, T), True = padding."""
        ids = classmap.long()
        valid = (ids >= 0) & (ids < self.num_classes) & (ids != VOID_CLASS)
        ids = torch.where(valid, ids, torch.full_like(ids, self.num_classes))
        if self.encoding == "embed":
            x = self.embed(ids).permute(0, 3, 1, 2)
        else:
            x = F.one_hot(ids, self.num_classes + 1)[..., : self.num_classes].permute(0, 3, 1, 2).float()
        x = x.to(self.position.dtype)
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        tokens = self.norm(tokens + self.position)
        mask = F.avg_pool2d(valid[:, None].float(), self.patch).flatten(1) == 0
        return tokens, mask
