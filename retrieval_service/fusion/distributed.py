"""Data-parallel training on ``torch.distributed``: several GPUs, several machines, or several CPU
processes, launched by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

* ``World``: this process's place (rank, size, local rank) and the backend (NCCL on GPUs, gloo on
  CPUs); ``World.single()`` is one process, where every collective below is the identity.
* ``gather``: all-gather with gradients (``torch.distributed.nn``): every rank sees the whole global
  batch's embeddings, and the gradient of each rank's loss flows back to the rank that computed
  each row. With the losses' "this rank's share" (``losses.py``) and DDP's gradient averaging, the
  update equals the one of a single process holding the whole batch (see ``FusionTrainer``).
* ``RankBatchPlan``: the distributed sampler. The global batch of a step is the same permutation
  slice as in one process (seeded by seed and epoch); rank r takes its r-th contiguous block, so
  the gathered batch is the single-process batch, in the same order.
* ``wrap``: ``DistributedDataParallel`` around the training module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion.data import BatchPlan

logger = logging.getLogger(__name__)

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class World(BaseModel):
    """Where this process stands among the training processes."""

    rank: int = Field(default=0, ge=0)
    size: int = Field(default=1, ge=1)
    local_rank: int = Field(default=0, ge=0)

    @classmethod
    def single(cls) -> World:
        return cls()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> World:
        """The world ``torchrun`` describes in ``environ`` (one process when it sets nothing)."""
        if "WORLD_SIZE" not in environ:
            return cls.single()
        try:
            world = cls(
                rank=int(environ.get("RANK", "0")),
                size=int(environ["WORLD_SIZE"]),
                local_rank=int(environ.get("LOCAL_RANK", "0")),
            )
        except ValueError as exc:
            raise ConfigError(
                f"RANK/WORLD_SIZE/LOCAL_RANK are not a valid process group ({exc})", "launch with torchrun, or unset them"
            ) from exc
        if world.rank >= world.size:
            raise ConfigError(f"RANK {world.rank} is not below WORLD_SIZE {world.size}", "launch with torchrun")
        return world

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs and validates."""
        return self.rank == 0

    def rows(self, local: int) -> slice:
        """This rank's rows in a gathered batch of ``local`` rows per rank."""
        return slice(self.rank * local, (self.rank + 1) * local)


def device_for(world: World, device: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` when training on GPUs, else the asked one."""
    if world.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"process {world.local_rank} of this machine has no GPU of its own ({torch.cuda.device_count()} visible)",
                "start at most one process per GPU (torchrun --nproc_per_node), or train on CPU (GEOAGENT_DEVICE=cpu)",
            )
        return f"cuda:{world.local_rank}"
    return device


def init(world: World, device: torch.device, timeout_s: float = 3600.0) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU); MASTER_ADDR/PORT come from torchrun.
    ``timeout_s`` bounds a collective: rank 0 validates while the others wait at a barrier."""
    if not world.distributed or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        torch.distributed.init_process_group(
            backend, rank=world.rank, world_size=world.size, timeout=timedelta(seconds=timeout_s)
        )
    except ValueError as exc:  # env:// rendezvous without MASTER_ADDR/MASTER_PORT
        raise ConfigError(
            f"cannot join a process group of {world.size}: {exc}", "launch the processes with torchrun (it sets MASTER_ADDR/PORT)"
        ) from exc
    logger.info("rank %d of %d joined the %s process group", world.rank, world.size, backend)


def close(world: World) -> None:
    if world.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def gather(tensor: torch.Tensor | None, world: World) -> torch.Tensor | None:
    """Every rank's ``tensor`` concatenated in rank order, with gradients flowing back to each rank's
    own rows (identity in one process)."""
    if tensor is None or not world.distributed:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def gather_plain(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Like ``gather`` for tensors without gradients (coordinates, masks)."""
    if not world.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    torch.distributed.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def sum_all(values: torch.Tensor, world: World) -> torch.Tensor:
    """The sum over ranks (a copy; identity in one process)."""
    values = values.detach().clone()
    if world.distributed:
        torch.distributed.all_reduce(values)
    return values


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        torch.distributed.barrier()


def wrap(module: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``module`` (itself in one process). Parameters a step may
    leave unused (the text head without text rows, the logit scale of a disabled view) are allowed."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


class RankBatchPlan(BatchPlan):
    """Each rank's share of the global batches: the same global batches as ``BatchPlan`` (its
    permutation of (seed, epoch), full global batches only), rank r taking the r-th contiguous block."""

    def __init__(self, train_idx: np.ndarray, global_batch: int, seed: int, world: World) -> None:
        if global_batch % world.size:
            raise ConfigError(
                f"a global batch of {global_batch} does not split over {world.size} processes",
                f"use a --batch-size divisible by {world.size}",
            )
        super().__init__(train_idx, global_batch, seed)
        self.world = world
        self.local_batch = global_batch // world.size

    def batch(self, epoch: int, number: int, order: np.ndarray | None = None) -> np.ndarray:
        whole = super().batch(epoch, number, order)
        return whole[self.world.rows(self.local_batch)]
