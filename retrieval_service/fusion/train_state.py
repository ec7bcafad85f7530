"""The training state a resume needs (``state.pt``): model, optimiser, LR schedule, gradient scaler,
GPS queue, the data position (epoch, batch), the history, and the RNG state of every process.

Rank 0 writes it; every rank reads it back. The RNG states are gathered from all ranks, so a resume
with the same number of processes continues each rank's dropout exactly; with another number the
data position still holds (the global batch is what the plan cuts), rank 0 takes the saved rank-0
state and the other ranks are seeded afresh (a warning says so).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion import checkpoint as ckpt
from retrieval_service.fusion import distributed as dist

if TYPE_CHECKING:
    from retrieval_service.fusion.trainer import FusionTrainer

logger = logging.getLogger(__name__)

RESUMABLE_CHANGES = {
    "epochs",
    "max_steps",
    "checkpoint_every",
    "log_every",
    "workers",
    "val_gallery",
    "val_every",
    "val_gallery_sample",
    "amp",
}
"""Train-config fields a resumed run may change (the others shape the data or the optimisation)."""


def _features_key(trainer: FusionTrainer) -> dict[str, Any]:
    return {"rows": len(trainer.features), "spec": trainer.features.spec.model_dump(mode="json")}


def training_state(trainer: FusionTrainer) -> dict[str, Any]:
    """The whole state (a collective: every rank must call it, rank 0 gets the complete one)."""
    rngs = dist.gather_objects(ckpt.rng_state(), trainer.world)
    return {
        "kind": ckpt.KIND + "-state",
        "config": trainer.config.model_dump(mode="json"),
        "train": trainer.train_cfg.model_dump(mode="json"),
        "features": _features_key(trainer),
        "model": trainer.model.state_dict(),
        "queue": trainer.queue.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "rng": rngs[0],
        "rng_ranks": rngs,
        "world_size": trainer.world.size,
        "position": {"step": trainer.step, "epoch": trainer.epoch, "batch": trainer.batch_in_epoch},
        "history": trainer.history,
        "best_score": trainer.best_score,
    }


def restore(trainer: FusionTrainer, state: dict[str, Any]) -> None:
    """Load ``state`` into ``trainer`` after checking it is the same run (model, training, features)."""
    if state["config"] != trainer.config.model_dump(mode="json"):
        raise ConfigError(
            f"{trainer.run_dir} holds a run of a different model",
            "pass the same model options, or use another --out (or --fresh)",
        )
    old = {k: v for k, v in state["train"].items() if k not in RESUMABLE_CHANGES}
    new = {k: v for k, v in trainer.train_cfg.model_dump(mode="json").items() if k not in RESUMABLE_CHANGES}
    if old != new:
        changed = sorted(k for k in new if old.get(k) != new[k])
        raise ConfigError(
            f"{trainer.run_dir} holds a run trained with other {', '.join(changed)}",
            "pass the same training options, or use another --out (or --fresh)",
        )
    if state["features"] != _features_key(trainer):
        raise ConfigError(
            f"{trainer.run_dir} was trained on other features",
            "pass the same features folder, or use another --out (or --fresh)",
        )
    trainer.model.load_state_dict(state["model"])
    trainer.queue.load_state_dict(state["queue"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    world = trainer.world
    ranks = state.get("rng_ranks") or [state["rng"]]
    if len(ranks) == world.size:
        ckpt.set_rng_state(ranks[world.rank])
    else:
        ckpt.set_rng_state(state["rng"])
        if world.rank:
            torch.manual_seed(trainer.train_cfg.seed + 1_000_003 * world.rank + state["position"]["step"])
        if world.main:
            logger.warning(
                "resuming a run of %d processes with %d: the data position is exact, dropout masks start afresh",
                len(ranks),
                world.size,
            )
    pos = state["position"]
    trainer.step, trainer.epoch, trainer.batch_in_epoch = pos["step"], pos["epoch"], pos["batch"]
    trainer.history, trainer.best_score = list(state["history"]), float(state["best_score"])
    trainer.resumed_from = trainer.step
    logger.info(
        "resuming %s at step %d (epoch %d, batch %d)", trainer.run_dir, trainer.step, trainer.epoch, trainer.batch_in_epoch
    )
