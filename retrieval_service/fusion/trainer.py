"""Training the fusion model on precomputed features, resumable exactly, in one process or many.

AdamW (no weight decay on norms, biases, positions and temperatures), linear warm-up then cosine
decay, gradient clipping, mixed precision on CUDA (bfloat16 where supported, else float16 with a
gradient scaler), seeds. Every ``checkpoint_every`` steps and at each epoch end the whole training
state is written atomically (``state.pt``); started again on the same folder, training continues
from that state and produces the same weights as a run that was never interrupted (on the same
device and thread count). Every ``val_every`` epochs (and at the end) a validation (top-1 against a
sample of a GPS gallery; the last one also against the whole gallery); each epoch a model
checkpoint (``fusion.pt``; ``best.pt`` holds the best validation so far) and a log row.

Under ``torchrun`` (a ``World`` of several processes) each process trains on its block of every
global batch (``distributed.RankBatchPlan``) with DistributedDataParallel and the embeddings
gathered over the processes (``step.Stepper``): the contrastive batch is the global batch, the GPS
queue the same everywhere. Rank 0 validates and writes the checkpoints and logs (with every rank's
RNG state); every rank resumes from them, so the run folder must be on storage all nodes share.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from retrieval_service.fusion import checkpoint as ckpt
from retrieval_service.fusion import distributed as dist
from retrieval_service.fusion.config import FusionConfig, TrainConfig
from retrieval_service.fusion.data import BatchPlan, prefetch, split_rows
from retrieval_service.fusion.features import FeatureSet
from retrieval_service.fusion.logs import RunLog
from retrieval_service.fusion.losses import GPSQueue, LossParts
from retrieval_service.fusion.model import FusionModel
from retrieval_service.fusion.step import Stepper
from retrieval_service.fusion.train_state import restore, training_state
from retrieval_service.fusion.validation import gallery_coordinates, sample_gallery, to_device, validate

logger = logging.getLogger(__name__)

Event = dict[str, Any]
# train-config fields a resumed run may change (the others shape the data or the optimisation)


class TrainResult(BaseModel):
    run_dir: str
    model_path: str
    steps: int
    epochs_completed: int
    resumed_from_step: int
    train_rows: int
    val_rows: int
    samples_per_s: float
    validation: list[dict[str, Any]]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim < 2 or name.endswith("bias") or "position" in name or "logit_scale" in name or "token" in name
        (no_decay if plain else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class FusionTrainer:
    def __init__(
        self,
        features: FeatureSet,
        run_dir: Path,
        config: FusionConfig,
        train: TrainConfig,
        *,
        device: str = "auto",
        resume: bool = True,
        world: dist.World | None = None,
    ) -> None:
        from retrieval_service.retrieval.image_encoder import resolve_device

        features.require_complete()
        self.world = world or dist.World.single()
        self.features, self.run_dir, self.config, self.train_cfg = features, Path(run_dir), config, train
        self.device = resolve_device(dist.device_for(self.world, device))
        dist.init(self.world, self.device)
        self.train_idx, self.val_idx = split_rows(features, train.val_split, train.val_fraction, train.val_max)
        self.plan: BatchPlan = (
            dist.RankBatchPlan(self.train_idx, train.batch_size, train.seed, self.world)
            if self.world.distributed
            else BatchPlan(self.train_idx, train.batch_size, train.seed)
        )
        per_epoch = self.plan.steps_per_epoch
        self.total_steps = min(train.epochs * per_epoch, train.max_steps or math.inf)
        torch.manual_seed(train.seed)
        np.random.seed(train.seed)
        random.seed(train.seed)
        self.model = FusionModel(features.spec, config).to(self.device).train()  # the same weights on every rank
        if self.world.rank:
            torch.manual_seed(train.seed + 1_000_003 * self.world.rank)  # each rank its own dropout masks
        self.queue = GPSQueue(config.queue_size).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, train.weight_decay), lr=train.lr, betas=(0.9, 0.98), eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, int(self.total_steps), train.warmup_steps, train.min_lr_ratio)
        )
        self.stepper = Stepper(
            self.model,
            self.optimizer,
            self.scheduler,
            self.queue,
            self.device,
            self.world,
            amp=train.amp,
            grad_clip=train.grad_clip,
        )
        self.amp_dtype, self.scaler = self.stepper.amp_dtype, self.stepper.scaler
        self.names = (
            ("tokens", "pooled")
            + (("classmap",) if config.use_segmentation else ())
            + (("text", "has_text") if config.use_text else ())
        )
        self.step = self.epoch = self.batch_in_epoch = 0
        self.resumed_from = 0
        self.history: list[dict[str, Any]] = []
        self.best_score = -1.0
        state_path = self.run_dir / ckpt.STATE_FILE
        if resume and state_path.is_file():
            restore(self, ckpt.load_state(state_path))
        dist.barrier(self.world)  # no rank starts before all have read the state

    def save_state(self) -> None:
        """Rank 0 writes the training state (with every rank's RNG state); every rank must call it."""
        state = training_state(self)
        if self.world.main:
            ckpt.atomic_save(state, self.run_dir / ckpt.STATE_FILE)
        dist.barrier(self.world)

    def train_step(self, batch: dict[str, torch.Tensor], latlon: torch.Tensor) -> LossParts:
        """One optimiser step on this process's rows, already on the device (also used by the
        benchmark); the losses of the global batch."""
        return self.stepper.step(batch, latlon, self.step)

    # ------------------------------------------------------------------ the loop
    def run(self, on_event: Callable[[Event], None] | None = None) -> TrainResult:
        """Train to the end (events and logs on rank 0 only); every rank returns the same result."""
        main = self.world.main
        emit = (on_event or (lambda event: None)) if main else (lambda event: None)
        log = RunLog(self.run_dir, self.resumed_from) if main else None
        gallery = None
        if len(self.val_idx) and main:
            gallery = gallery_coordinates(self.train_cfg.val_gallery, self.features, self.train_idx)
        emit(
            {
                "kind": "start",
                "step": self.step,
                "total": int(self.total_steps),
                "train_rows": len(self.train_idx),
                "val_rows": len(self.val_idx),
                "processes": self.world.size,
            }
        )
        window_start, window_samples = time.perf_counter(), 0
        rates: list[float] = []
        sums: dict[str, float] = {}
        try:
            while self.step < self.total_steps:
                for number, idx, arrays in prefetch(
                    self.features, self.plan, self.epoch, self.batch_in_epoch, self.names, self.train_cfg.workers
                ):
                    batch = to_device(arrays, self.device)
                    latlon = torch.from_numpy(self.features.coords[idx]).to(self.device)
                    parts = self.train_step(batch, latlon)
                    self.step += 1
                    self.batch_in_epoch = number + 1
                    window_samples += len(idx) * self.world.size
                    for key, value in parts._asdict().items():
                        if value is not None:
                            sums[key] = sums.get(key, 0.0) + float(value)
                    elapsed = time.perf_counter() - window_start
                    rate = window_samples / elapsed if elapsed > 0 else 0.0
                    lr = float(self.scheduler.get_last_lr()[0])
                    emit(
                        {
                            "kind": "step",
                            "step": self.step,
                            "total": int(self.total_steps),
                            "epoch": self.epoch,
                            "loss": float(parts.total),
                            "samples_per_s": rate,
                            "lr": lr,
                        }
                    )
                    if self.step % self.train_cfg.log_every == 0:
                        if log is not None:
                            scales = {f"scale_{k}": float(v.detach()) for k, v in self.model.scales().items()}
                            losses = {f"loss_{k}": v / self.train_cfg.log_every for k, v in sums.items()}
                            log.train(self.step, {"epoch": self.epoch, **losses, "lr": lr, "samples_per_s": rate, **scales})
                        sums, rates = {}, [*rates, rate]
                        window_start, window_samples = time.perf_counter(), 0
                    if self.batch_in_epoch == self.plan.steps_per_epoch:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                        self._end_of_epoch(log, gallery, emit)
                        window_start, window_samples = time.perf_counter(), 0  # validation is not training time
                    elif self.step % self.train_cfg.checkpoint_every == 0:
                        self.save_state()
                        emit({"kind": "checkpoint", "step": self.step})
                    if self.step >= self.total_steps:
                        break
            if self.batch_in_epoch or not self.history or self.history[-1]["step"] != self.step:
                self._end_of_epoch(log, gallery, emit)  # stopped by max_steps mid-epoch: validate and save anyway
        finally:
            if log is not None:
                log.close()
        total_rate = float(np.mean(rates)) if rates else (window_samples / max(time.perf_counter() - window_start, 1e-9))
        return TrainResult(
            run_dir=str(self.run_dir),
            model_path=str(self.run_dir / ckpt.MODEL_FILE),
            steps=self.step,
            epochs_completed=self.epoch,
            resumed_from_step=self.resumed_from,
            train_rows=len(self.train_idx),
            val_rows=len(self.val_idx),
            samples_per_s=total_rate,
            validation=self.history,
        )

    def _validate(self, gallery: np.ndarray, log: RunLog | None, emit: Callable[[Event], None]) -> dict[str, Any]:
        result = validate(self.model, self.features, self.val_idx, gallery, self.device, max(self.train_cfg.batch_size, 256))
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "n": result.n, "gallery": result.gallery}
        row |= {"median_km": result.median_km, **{f"acc_{k}km": v for k, v in result.accuracy.items()}}
        if log is not None:
            log.validation(self.step, self.epoch, {k: float(v) for k, v in row.items() if k not in ("step", "epoch")})
        emit({"kind": "validation", **row})
        return row

    def _end_of_epoch(self, log: RunLog | None, gallery: np.ndarray | None, emit: Callable[[Event], None]) -> None:
        """Validation (when due; rank 0, the others wait), checkpoints and the training state."""
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch}
        final = self.step >= self.total_steps
        due = final or self.epoch % self.train_cfg.val_every == 0
        score: float | None = None
        if self.world.main:
            if gallery is not None and due:
                sample = sample_gallery(gallery, self.train_cfg.val_gallery_sample, self.train_cfg.seed)
                row = self._validate(sample, log, emit)
                score = float(np.mean([v for k, v in row.items() if k.startswith("acc_")]))
                if final and len(sample) < len(gallery):  # the run's figures against the whole gallery
                    full = self._validate(gallery, log, emit)
                    row |= {f"full_{k}": v for k, v in full.items() if k not in ("step", "epoch", "n")}
            elif not len(self.val_idx):
                score = -float(self.step)  # no validation rows: the latest model is the best one
        row = dist.gather_objects(row, self.world)[0]  # every rank keeps the same history
        self.history.append(row)
        if self.world.main:
            meta = {"step": self.step, "epoch": self.epoch, "validation": row, "features": str(self.features.root)}
            ckpt.save_model(self.model, self.run_dir / ckpt.MODEL_FILE, meta)
            if score is not None and (score > self.best_score or not len(self.val_idx)):
                self.best_score = score
                ckpt.save_model(self.model, self.run_dir / "best.pt", meta)
        self.save_state()
        emit({"kind": "checkpoint", "step": self.step})
