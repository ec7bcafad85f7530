"""Calibrated confidence: isotonic maps from the model's P(error <= t) to observed hit rates.

``geoagent calibrate RUN_DIR...`` fits one isotonic regression per threshold on labelled eval runs
(predicted probability -> hit, with hit = error <= t) and saves it under the data dir, named after
the mode and the fingerprint of the settings it is valid for (image model and weights, gallery
search, top_k, LMM). A Prediction whose settings match a saved map reports the mapped
probabilities and ``calibrated: true``; otherwise the model's own numbers and ``calibrated: false``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from agent.prediction import THRESHOLDS_KM

logger = logging.getLogger(__name__)

CALIBRATION_FORMAT = "1"
FINGERPRINT_FIELDS = ("image_model", "image_pretrained", "gallery_search", "top_k", "llm_model")
MIN_ROWS = 20


class IsotonicMap(BaseModel):
    """A monotone piecewise-linear map given by its knots (x increasing, y non-decreasing)."""

    x: list[float]
    y: list[float]

    def __call__(self, p: float) -> float:
        return float(np.clip(np.interp(p, self.x, self.y), 0.0, 1.0))


class Calibration(BaseModel):
    """The maps for one mode and settings fingerprint, with what they were fitted on."""

    format: str = CALIBRATION_FORMAT
    mode: str
    fingerprint: str
    rows: int
    maps: dict[str, IsotonicMap]

    def apply(self, probabilities: dict[str, float]) -> dict[str, float]:
        out = {k: round(self.maps[k](v), 4) if k in self.maps else v for k, v in probabilities.items()}
        keys = [str(t) for t in THRESHOLDS_KM if str(t) in out]
        for a, b in itertools.pairwise(keys):  # P(error <= t) cannot fall as t grows
            out[b] = max(out[b], out[a])
        return out


def settings_fingerprint(settings: Any) -> str:
    """What a calibration is valid for: the fields that change the probabilities."""
    get = settings.get if isinstance(settings, dict) else (lambda name, default=None: getattr(settings, name, default))
    values = {name: get(name, None) for name in FINGERPRINT_FIELDS}
    digest = hashlib.sha256(json.dumps({"format": CALIBRATION_FORMAT, **values}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def calibration_path(data_dir: Path, mode: str, fingerprint: str) -> Path:
    return Path(data_dir) / "calibration" / f"{mode}-{fingerprint}.json"


def fit(predicted: Sequence[dict[str, float]], errors_km: Sequence[float | None], mode: str, fingerprint: str) -> Calibration:
    """One isotonic map per threshold from predicted probabilities and observed errors (None = miss)."""
    from sklearn.isotonic import IsotonicRegression

    maps: dict[str, IsotonicMap] = {}
    d = np.array([np.inf if e is None else float(e) for e in errors_km])
    for t in THRESHOLDS_KM:
        key = str(t)
        p = np.array([float(row.get(key, 0.0)) for row in predicted])
        hit = (d <= t).astype(float)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(p, hit)
        maps[key] = IsotonicMap(x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_])
    return Calibration(mode=mode, fingerprint=fingerprint, rows=len(d), maps=maps)


def save(calibration: Calibration, data_dir: Path) -> Path:
    path = calibration_path(data_dir, calibration.mode, calibration.fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(calibration.model_dump_json(indent=1))
    os.replace(tmp, path)
    return path


_loaded: dict[tuple[str, float], Calibration | None] = {}


def load(settings: Any, mode: str) -> Calibration | None:
    """The saved calibration for this mode and these settings, or None."""
    path = calibration_path(settings.data_dir, mode, settings_fingerprint(settings))
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    key = (str(path), stamp)
    if key not in _loaded:
        try:
            _loaded[key] = Calibration.model_validate_json(path.read_text())
        except (OSError, ValueError) as exc:
            logger.warning("ignoring the unreadable calibration %s: %s", path, exc)
            _loaded[key] = None
    return _loaded[key]
