"""Training logs: ``train.csv`` (loss parts, learning rate, temperatures, samples/s every
``log_every`` steps) and ``validation.csv`` (accuracy per threshold, median error, every epoch),
plus TensorBoard event files when ``tensorboard`` is installed. A resumed run first drops the rows
logged after the step it resumes from, so the logs read as one uninterrupted run."""

from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TRAIN_LOG = "train.csv"
VAL_LOG = "validation.csv"


def _truncate(path: Path, after_step: int) -> None:
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= after_step]
    if len(kept) == len(rows):
        return
    fields = list(rows[0].keys()) if rows else []
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)


class RunLog:
    def __init__(self, run_dir: Path, resume_step: int = 0) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (TRAIN_LOG, VAL_LOG):
            _truncate(run_dir / name, resume_step)
        self._tb: Any = None
        if importlib.util.find_spec("tensorboard") is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(
                    log_dir=str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
                )
            except Exception as exc:  # tensorboard is optional; a broken install must not stop training
                logger.warning("TensorBoard logging disabled: %s", exc)

    def _append(self, name: str, row: dict[str, Any]) -> None:
        path = self.run_dir / name
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def train(self, step: int, values: dict[str, float]) -> None:
        self._append(TRAIN_LOG, {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}})
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"train/{key}", value, step)

    def validation(self, step: int, epoch: int, values: dict[str, float]) -> None:
        self._append(VAL_LOG, {"step": step, "epoch": epoch, **{k: f"{v:.6g}" for k, v in values.items()}})
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"val/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
