"""One optimiser step of contrastive training, the same code in one process and in many.

``ContrastiveForward`` is the module DistributedDataParallel wraps: the model's image side plus the
GPS (and text) encodings of the batch, so that every parameter a step uses is reached from its
output. ``Stepper.step``: forward on this process's rows, gather the embeddings of all processes
(gradients flow back to the process that computed each row), each process's share of the global
loss, backward on ``world.size`` times that share (DDP averages the gradients, so the update is the
gradient of the global batch's loss), clipping, the optimiser, the LR schedule, and the GPS queue
pushed with the global batch's coordinates (the same queue in every process).

Mixed precision runs on CUDA only (bfloat16 where supported, else float16 with a gradient scaler);
on CPU the step is float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion import distributed as dist
from retrieval_service.fusion.losses import Embeddings, GPSQueue, LossParts, fusion_loss
from retrieval_service.fusion.model import FusionModel


class ContrastiveForward(nn.Module):
    """The model's outputs for a batch: fused and segmentation embeddings, the GPS embeddings of the
    batch's coordinates and of the queue's, the text embeddings, and the temperatures."""

    def __init__(self, model: FusionModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        tokens: torch.Tensor,
        pooled: torch.Tensor,
        classmap: torch.Tensor | None,
        latlon: torch.Tensor,
        negatives: torch.Tensor | None,
        text: torch.Tensor | None,
    ) -> tuple[Any, ...]:
        out = self.model(tokens, pooled, classmap)
        n = latlon.shape[0]
        if negatives is not None and negatives.shape[0]:
            both = self.model.encode_gps(torch.cat((latlon, negatives), dim=0))
            gps, extra = both[:n], both[n:]
        else:
            gps, extra = self.model.encode_gps(latlon), None
        text_emb = self.model.encode_text(text) if text is not None and self.model.text_head is not None else None
        scales = self.model.scales()
        used = {"fused": scales["fused"]} | ({"seg": scales["seg"]} if out.seg is not None else {})
        if text_emb is not None:
            used["text"] = scales["text"]
        return out.fused, out.seg, gps, extra, text_emb, used  # only what the loss uses: DDP waits for its gradients


def amp_dtype(wanted: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bfloat16 on GPUs that have it, else float16; None (float32) off CUDA."""
    if not wanted or device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Stepper:
    """The optimisation state of a run and the step that advances it."""

    def __init__(
        self,
        model: FusionModel,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        queue: GPSQueue,
        device: torch.device,
        world: dist.World,
        *,
        amp: bool = True,
        grad_clip: float | None = None,
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.queue = model, optimizer, scheduler, queue
        self.device, self.world, self.grad_clip = device, world, grad_clip
        self.amp_dtype = amp_dtype(amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.forward = dist.wrap(ContrastiveForward(model), world, device)

    def step(self, batch: dict[str, torch.Tensor], latlon: torch.Tensor, at_step: int = 0) -> LossParts:
        """One step on this process's rows (already on the device); returns the global batch's losses."""
        world = self.world
        self.optimizer.zero_grad(set_to_none=True)
        negatives = self.queue.get() if self.queue.size else None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            fused, seg, gps, extra, text, scales = self.forward(
                batch["tokens"], batch["pooled"], batch.get("classmap"), latlon, negatives, batch.get("text")
            )
            mask = batch.get("has_text")
            if text is not None and mask is not None:
                mask = dist.gather_plain(mask.to(torch.uint8), world).bool()
            emb = Embeddings(
                fused=dist.gather(fused, world),  # type: ignore[arg-type]
                seg=dist.gather(seg, world),
                gps=dist.gather(gps, world),  # type: ignore[arg-type]
                extra=extra,
                text=dist.gather(text, world),
                text_mask=mask if text is not None else None,
            )
            parts = fusion_loss(self.model.config, scales, emb, world.rows(latlon.shape[0]) if world.distributed else None)
        if text is not None and parts.text is None:  # too few text rows this step: the text branch gets zero gradients
            parts = parts._replace(total=parts.total + 0.0 * (text.float().sum() + scales["text"]))
        names = [name for name, value in parts._asdict().items() if value is not None]
        totals = dist.sum_all(torch.stack([getattr(parts, name).detach().float() for name in names]), world)
        summed = dict(zip(names, totals, strict=True))  # the shares of all processes: the global batch's losses
        if not torch.isfinite(summed["total"]):
            raise ConfigError(
                f"the loss became {summed['total'].item()} at step {at_step}", "lower --lr or disable --amp, then resume"
            )
        self.scaler.scale(parts.total * world.size).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.queue.push(dist.gather_plain(latlon, world))
        return LossParts(
            total=summed["total"],
            fused=summed["fused"],
            seg=summed.get("seg"),
            text=summed.get("text"),
            text_gps=summed.get("text_gps"),
        )
