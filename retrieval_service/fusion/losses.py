"""Contrastive losses: dual-view InfoNCE (fused<->GPS and segmentation<->GPS, DualGeo), optional
image-text-GPS joint embedding (TransGeoCLIP: fused<->text and text<->GPS, so that a place's
description lands beside its coordinates and its photos), an optional queue of past GPS coordinates
as extra negatives (GeoCLIP), learnable temperatures (the model's logit scales).

The functions take embeddings already gathered over the training processes (``distributed.gather``)
and return this process's share of the global batch's loss, so the same code serves one process
and many."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from retrieval_service.fusion.config import FusionConfig


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor,
    extra_b: torch.Tensor | None = None,
    rows: slice | torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned unit vectors ``a`` and ``b`` (positives on the diagonal).

    ``extra_b`` (m, d) are more negatives for the a->b direction only (GeoCLIP's GPS queue); without
    them the loss is symmetric: ``info_nce(a, b) == info_nce(b, a)``.

    ``rows``: the rows this process scores (a slice or indices of ``a``), when ``a`` and ``b`` are a
    batch gathered from several processes. The result is those rows' share of the mean over all
    rows (their summed loss over ``len(a)``), so the shares of the processes add up to the loss of
    one process holding the whole batch; None scores every row (the mean).
    """
    rows = slice(0, a.shape[0]) if rows is None else rows
    targets = torch.arange(a.shape[0], device=a.device)[rows]
    a_rows, b_rows = a[rows].float(), b[rows].float()
    a_to_b = scale * a_rows @ b.float().T
    if extra_b is not None:
        a_to_b = torch.cat((a_to_b, scale * a_rows @ extra_b.float().T), dim=1)
    b_to_a = scale * b_rows @ a.float().T
    summed = F.cross_entropy(a_to_b, targets, reduction="sum") + F.cross_entropy(b_to_a, targets, reduction="sum")
    return summed / (2 * a.shape[0])


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


class Embeddings(NamedTuple):
    """A training batch in the shared space, gathered over the processes (rows in global batch order).

    ``extra``: the GPS queue's coordinates encoded by this process (every process holds the same
    queue); ``text_mask``: the rows that have a text prompt."""

    fused: torch.Tensor
    seg: torch.Tensor | None
    gps: torch.Tensor
    extra: torch.Tensor | None = None
    text: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None


def fusion_loss(config: FusionConfig, scales: dict[str, torch.Tensor], emb: Embeddings, rows: slice | None = None) -> LossParts:
    """fused<->GPS + seg_weight * seg<->GPS (+ text_weight * fused<->text + text_gps_weight *
    text<->GPS over the rows with text, both at the text temperature).

    ``rows``: this process's rows of the gathered batch (None: one process, every row). Each part is
    this process's share of the global batch's loss (see ``info_nce``): the shares of all processes
    sum to what one process computes on the whole batch."""
    fused = info_nce(emb.fused, emb.gps, scales["fused"], emb.extra, rows)
    total = fused
    seg = None
    if emb.seg is not None:
        seg = info_nce(emb.seg, emb.gps, scales["seg"], emb.extra, rows)
        total = total + config.seg_loss_weight * seg
    text_loss = text_gps = None
    if emb.text is not None:
        n = emb.fused.shape[0]
        mask = emb.text_mask if emb.text_mask is not None else torch.ones(n, dtype=torch.bool, device=emb.fused.device)
        having = torch.nonzero(mask).flatten()
        if len(having) >= 2:
            mine = rows or slice(0, n)
            inside = torch.nonzero((having >= (mine.start or 0)) & (having < (mine.stop if mine.stop is not None else n)))
            described, mine_rows = emb.text[having], inside.flatten()
            text_loss = info_nce(emb.fused[having], described, scales["text"], rows=mine_rows)
            text_gps = info_nce(described, emb.gps[having], scales["text"], rows=mine_rows)
            total = total + config.text_loss_weight * text_loss + config.text_gps_loss_weight * text_gps
    return LossParts(total=total, fused=fused, seg=seg, text=text_loss, text_gps=text_gps)
