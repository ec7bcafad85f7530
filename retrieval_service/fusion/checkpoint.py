"""Checkpoint files.

* The **model checkpoint** (``fusion.pt``, ``best.pt``): the feature spec, the architecture and the
  trained weights (the frozen CLIP tower is not copied: the spec names it). This is what
  ``GEOAGENT_ENCODER=fusion:PATH`` and ``index build --encoder fusion:PATH`` load.
* The **training state** (``state.pt``): everything an exact resume needs: model, optimiser,
  LR schedule, gradient scaler, GPS queue, every RNG, and the data position (epoch, batch).

Both are written to a temporary file and renamed over the old one, so a kill -9 at any moment
leaves the previous complete file in place.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrieval_service.core.errors import ConfigError, ModelMismatchError, WeightsNotFoundError
from retrieval_service.fusion.config import FeatureSpec, FusionConfig
from retrieval_service.fusion.model import FusionModel

KIND = "geoagent-fusion"
VERSION = 1
MODEL_FILE = "fusion.pt"
STATE_FILE = "state.pt"

_fp_lock = threading.Lock()
_fp_cache: dict[tuple[str, int, int], str] = {}


def atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def resolve_model_path(path: str | Path) -> Path:
    """A checkpoint file, or a training run folder (its ``fusion.pt``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise WeightsNotFoundError(
            f"fusion checkpoint not found: {p}",
            "train one with geoagent train fusion (it writes RUN/fusion.pt) and pass fusion:RUN/fusion.pt",
        )
    return p


def fingerprint(path: str | Path) -> str:
    """12 hex digits of the checkpoint file's SHA-256: names its collections (cached per file version)."""
    p = resolve_model_path(path).resolve()
    stat = p.stat()
    key = (str(p), stat.st_size, stat.st_mtime_ns)
    with _fp_lock:
        if key not in _fp_cache:
            digest = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            _fp_cache[key] = digest.hexdigest()[:12]
        return _fp_cache[key]


def save_model(model: FusionModel, path: Path, meta: dict[str, Any] | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save(
        {
            "kind": KIND,
            "version": VERSION,
            "spec": model.spec.model_dump(mode="json"),
            "config": model.config.model_dump(mode="json"),
            "state_dict": state,
            "meta": meta or {},
        },
        path,
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file: one clear error
        raise WeightsNotFoundError(
            f"{path} is not a readable checkpoint: {exc}", "pass a fusion.pt written by geoagent train fusion"
        ) from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ModelMismatchError(
            f"{path} is not a geoagent fusion checkpoint", "pass a fusion.pt written by geoagent train fusion"
        )
    if data.get("version") != VERSION:
        raise ModelMismatchError(
            f"{path} has checkpoint version {data.get('version')}, this geoagent reads {VERSION}",
            "retrain or use a matching geoagent",
        )
    return data


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[FusionModel, dict[str, Any]]:
    """The model (eval mode, on ``device``) and the checkpoint's metadata."""
    p = resolve_model_path(path)
    data = _load(p)
    try:
        spec = FeatureSpec.model_validate(data["spec"])
        config = FusionConfig.model_validate(data["config"])
    except ValueError as exc:
        raise ModelMismatchError(f"{p} describes a model this geoagent cannot build: {exc}", "retrain with this version") from exc
    model = FusionModel(spec, config)
    model.load_state_dict(data["state_dict"])
    return model.to(device).eval(), dict(data.get("meta") or {})


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConfigError(
            f"training state {path} is unreadable: {exc}", f"delete {path} to start over (the run restarts from step 0)"
        ) from exc
    if not isinstance(data, dict) or data.get("kind") != KIND + "-state":
        raise ConfigError(f"{path} is not a fusion training state", "use an empty --out folder for a new run")
    return data
