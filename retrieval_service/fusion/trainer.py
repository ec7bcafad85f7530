"""Training the fusion model on precomputed features, resumable exactly.

AdamW (no weight decay on norms, biases, positions and temperatures), linear warm-up then cosine
decay, gradient clipping, mixed precision on CUDA (bfloat16 where supported, else float16 with a
gradient scaler), seeds. Every ``checkpoint_every`` steps and at each epoch end the whole training
state is written atomically (``state.pt``); started again on the same folder, training continues
from that state and produces the same weights as a run that was never interrupted (on the same
device and thread count). Each epoch ends with a validation (top-1 against a GPS gallery), a model
checkpoint (``fusion.pt``; ``best.pt`` holds the best validation so far) and a log row.
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

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion import checkpoint as ckpt
from retrieval_service.fusion.config import FusionConfig, TrainConfig
from retrieval_service.fusion.data import BatchPlan, prefetch, split_rows
from retrieval_service.fusion.features import FeatureSet
from retrieval_service.fusion.logs import RunLog
from retrieval_service.fusion.losses import GPSQueue, LossParts, fusion_loss
from retrieval_service.fusion.model import FusionModel
from retrieval_service.fusion.validation import ValidationResult, gallery_coordinates, to_device, validate

logger = logging.getLogger(__name__)

Event = dict[str, Any]
# train-config fields a resumed run may change (the others shape the data or the optimisation)
RESUMABLE_CHANGES = {"epochs", "max_steps", "checkpoint_every", "log_every", "workers", "val_gallery", "amp"}


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
    decay, no_decay = [], []
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
    ) -> None:
        from retrieval_service.retrieval.image_encoder import resolve_device

        features.require_complete()
        self.features, self.run_dir, self.config, self.train_cfg = features, Path(run_dir), config, train
        self.device = resolve_device(device)
        self.train_idx, self.val_idx = split_rows(features, train.val_split, train.val_fraction, train.val_max)
        self.plan = BatchPlan(self.train_idx, train.batch_size, train.seed)
        per_epoch = self.plan.steps_per_epoch
        self.total_steps = min(train.epochs * per_epoch, train.max_steps or math.inf)
        torch.manual_seed(train.seed)
        np.random.seed(train.seed)
        random.seed(train.seed)
        self.model = FusionModel(features.spec, config).to(self.device).train()
        self.queue = GPSQueue(config.queue_size).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, train.weight_decay), lr=train.lr, betas=(0.9, 0.98), eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, int(self.total_steps), train.warmup_steps, train.min_lr_ratio)
        )
        self.amp_dtype: torch.dtype | None = None
        if train.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
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
            self._restore(ckpt.load_state(state_path))

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return {
            "kind": ckpt.KIND + "-state",
            "config": self.config.model_dump(mode="json"),
            "train": self.train_cfg.model_dump(mode="json"),
            "features": {"rows": len(self.features), "spec": self.features.spec.model_dump(mode="json")},
            "model": self.model.state_dict(),
            "queue": self.queue.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "position": {"step": self.step, "epoch": self.epoch, "batch": self.batch_in_epoch},
            "history": self.history,
            "best_score": self.best_score,
        }

    def save_state(self) -> None:
        ckpt.atomic_save(self._state(), self.run_dir / ckpt.STATE_FILE)

    def _restore(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config.model_dump(mode="json"):
            raise ConfigError(
                f"{self.run_dir} holds a run of a different model",
                "pass the same model options, or use another --out (or --fresh)",
            )
        old = {k: v for k, v in state["train"].items() if k not in RESUMABLE_CHANGES}
        new = {k: v for k, v in self.train_cfg.model_dump(mode="json").items() if k not in RESUMABLE_CHANGES}
        if old != new:
            changed = sorted(k for k in new if old.get(k) != new[k])
            raise ConfigError(
                f"{self.run_dir} holds a run trained with other {', '.join(changed)}",
                "pass the same training options, or use another --out (or --fresh)",
            )
        if state["features"] != {"rows": len(self.features), "spec": self.features.spec.model_dump(mode="json")}:
            raise ConfigError(
                f"{self.run_dir} was trained on other features",
                "pass the same features folder, or use another --out (or --fresh)",
            )
        self.model.load_state_dict(state["model"])
        self.queue.load_state_dict(state["queue"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        pos = state["position"]
        self.step, self.epoch, self.batch_in_epoch = pos["step"], pos["epoch"], pos["batch"]
        self.history, self.best_score = list(state["history"]), float(state["best_score"])
        self.resumed_from = self.step
        logger.info("resuming %s at step %d (epoch %d, batch %d)", self.run_dir, self.step, self.epoch, self.batch_in_epoch)

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: dict[str, torch.Tensor], latlon: torch.Tensor) -> LossParts:
        """One optimiser step on a batch already on the device (also used by the benchmark)."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.model(batch["tokens"], batch["pooled"], batch.get("classmap"))
            parts = fusion_loss(
                self.model, out, latlon, queue=self.queue, text=batch.get("text"), text_mask=batch.get("has_text")
            )
        if not torch.isfinite(parts.total):
            raise ConfigError(
                f"the loss became {parts.total.item()} at step {self.step}", "lower --lr or disable --amp, then resume"
            )
        self.scaler.scale(parts.total).backward()
        if self.train_cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.queue.push(latlon)
        return parts

    # ------------------------------------------------------------------ the loop
    def run(self, on_event: Callable[[Event], None] | None = None) -> TrainResult:
        emit = on_event or (lambda event: None)
        log = RunLog(self.run_dir, self.resumed_from)
        gallery = gallery_coordinates(self.train_cfg.val_gallery, self.features, self.train_idx) if len(self.val_idx) else None
        emit(
            {
                "kind": "start",
                "step": self.step,
                "total": int(self.total_steps),
                "train_rows": len(self.train_idx),
                "val_rows": len(self.val_idx),
            }
        )
        seen, window_start, window_samples, rates = 0, time.perf_counter(), 0, []
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
                    seen += len(idx)
                    window_samples += len(idx)
                    for key, value in parts._asdict().items():
                        if value is not None:
                            sums[key] = sums.get(key, 0.0) + float(value.detach())
                    elapsed = time.perf_counter() - window_start
                    rate = window_samples / elapsed if elapsed > 0 else 0.0
                    emit(
                        {
                            "kind": "step",
                            "step": self.step,
                            "total": int(self.total_steps),
                            "epoch": self.epoch,
                            "loss": float(parts.total.detach()),
                            "samples_per_s": rate,
                            "lr": self.scheduler.get_last_lr()[0],
                        }
                    )
                    if self.step % self.train_cfg.log_every == 0:
                        count = self.train_cfg.log_every
                        scales = {f"scale_{k}": float(v.detach()) for k, v in self.model.scales().items()}
                        log.train(
                            self.step,
                            {
                                "epoch": self.epoch,
                                **{f"loss_{k}": v / count for k, v in sums.items()},
                                "lr": self.scheduler.get_last_lr()[0],
                                "samples_per_s": rate,
                                **scales,
                            },
                        )
                        sums, rates = {}, [*rates, rate]
                        window_start, window_samples = time.perf_counter(), 0
                    last_of_epoch = self.batch_in_epoch == self.plan.steps_per_epoch
                    if last_of_epoch:
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

    def _end_of_epoch(self, log: RunLog, gallery: np.ndarray | None, emit: Callable[[Event], None]) -> None:
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch}
        if gallery is not None:
            result: ValidationResult = validate(
                self.model, self.features, self.val_idx, gallery, self.device, max(self.train_cfg.batch_size, 256)
            )
            row.update({"n": result.n, "median_km": result.median_km, **{f"acc_{k}km": v for k, v in result.accuracy.items()}})
            score = float(np.mean(list(result.accuracy.values())))
            log.validation(self.step, self.epoch, {k: float(v) for k, v in row.items() if k not in ("step", "epoch")})
            emit({"kind": "validation", **row})
        else:
            score = -float(self.step)  # no validation rows: the latest model is the best one
        self.history.append(row)
        meta = {"step": self.step, "epoch": self.epoch, "validation": row, "features": str(self.features.root)}
        ckpt.save_model(self.model, self.run_dir / ckpt.MODEL_FILE, meta)
        if score > self.best_score or gallery is None:
            self.best_score = score
            ckpt.save_model(self.model, self.run_dir / "best.pt", meta)
        self.save_state()
        emit({"kind": "checkpoint", "step": self.step})
