"""Contrastive losses: dual-view InfoNCE (fused<->GPS and segmentation<->GPS, DualGeo), optional
image-text-GPS joint embedding (TransGeoCLIP: fused<->text and text<->GPS, so that a place's
description lands beside its coordinates and its photos), an optional queue of past GPS coordinates
as extra negatives (GeoCLIP), learnable temperatures (the model's logit scales)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from retrieval_service.fusion.model import FusionModel, FusionOutput


def info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, extra_b: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned unit vectors ``a`` and ``b`` (positives on the diagonal).

    ``extra_b`` (m, d) are more negatives for the a->b direction only (GeoCLIP's GPS queue); without
    them the loss is symmetric: ``info_nce(a, b) == info_nce(b, a)``.
    """
    targets = torch.arange(a.shape[0], device=a.device)
    logits = scale * a.float() @ b.float().T
    a_to_b = logits if extra_b is None else torch.cat((logits, scale * a.float() @ extra_b.float().T), dim=1)
    return (F.cross_entropy(a_to_b, targets) + F.cross_entropy(logits.T, targets)) / 2


class GPSQueue(nn.Module):
    """A FIFO of the most recent training coordinates (raw lat/lon), re-encoded at every step by the
    current GPS encoder as negatives. Kept in the training state, so a resume continues it exactly."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("coords", torch.zeros(size, 2))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def get(self) -> torch.Tensor:
        return self.coords[: int(self.filled)]

    @torch.no_grad()
    def push(self, latlon: torch.Tensor) -> None:
        if self.size == 0:
            return
        latlon = latlon[-self.size :].to(self.coords)
        n, ptr = latlon.shape[0], int(self.ptr)
        idx = (torch.arange(n, device=self.coords.device) + ptr) % self.size
        self.coords[idx] = latlon
        self.ptr.fill_((ptr + n) % self.size)
        self.filled.fill_(min(int(self.filled) + n, self.size))


class LossParts(NamedTuple):
    total: torch.Tensor
    fused: torch.Tensor
    seg: torch.Tensor | None
    text: torch.Tensor | None
    text_gps: torch.Tensor | None = None


def text_losses(
    model: FusionModel, out: FusionOutput, gps: torch.Tensor, text: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The joint image-text-GPS embedding's two terms over the rows with text (None with fewer than
    two): fused<->text and text<->GPS, both at the text temperature."""
    if int(rows.sum()) < 2:
        return None
    scale = model.scales()["text"]
    described = model.encode_text(text[rows])
    return info_nce(out.fused[rows], described, scale), info_nce(described, gps[rows], scale)


def fusion_loss(
    model: FusionModel,
    out: FusionOutput,
    latlon: torch.Tensor,
    *,
    queue: GPSQueue | None = None,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
) -> LossParts:
    """fused<->GPS + seg_weight * seg<->GPS (+ text_weight * fused<->text + text_gps_weight *
    text<->GPS over the rows with text)."""
    config = model.config
    scales = model.scales()
    negatives = queue.get() if queue is not None and queue.size else None
    if negatives is not None and negatives.shape[0]:
        both = model.encode_gps(torch.cat((latlon, negatives), dim=0))
        gps, extra = both[: latlon.shape[0]], both[latlon.shape[0] :]
    else:
        gps, extra = model.encode_gps(latlon), None
    fused = info_nce(out.fused, gps, scales["fused"], extra)
    total = fused
    seg = None
    if out.seg is not None:
        seg = info_nce(out.seg, gps, scales["seg"], extra)
        total = total + config.seg_loss_weight * seg
    text_loss = text_gps = None
    if model.text_head is not None and text is not None:
        rows = text_mask if text_mask is not None else torch.ones(text.shape[0], dtype=torch.bool, device=text.device)
        both = text_losses(model, out, gps, text, rows)
        if both is not None:
            text_loss, text_gps = both
            total = total + config.text_loss_weight * text_loss + config.text_gps_loss_weight * text_gps
    return LossParts(total=total, fused=fused, seg=seg, text=text_loss, text_gps=text_gps)
