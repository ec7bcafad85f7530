"""Validation: top-1 retrieval against a GPS gallery encoded by the model's own GPS encoder, as
GeoCLIP evaluates: each validation photo's fused embedding picks the most similar gallery
coordinate; accuracy is the share of photos whose pick lies within 1/25/200/750/2500 km.

Its cost is the gallery's encoding (the GPS encoder changes every step, so it is re-encoded at each
validation: about 5 minutes for GeoCLIP's 100K coordinates on a CPU) plus the validation rows. The
trainer therefore validates every ``val_every`` epochs against a fixed sample of the gallery
(``sample_gallery``), and once against the whole gallery at the end of the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from retrieval_service.core.errors import DatasetError
from retrieval_service.core.geo import EARTH_RADIUS_KM, to_unit_vectors
from retrieval_service.core.tables import LAT_COLUMNS, LON_COLUMNS, find_column, read_csv_table
from retrieval_service.fusion.config import THRESHOLDS_KM
from retrieval_service.fusion.features import FeatureSet
from retrieval_service.fusion.model import FusionModel


class ValidationResult(BaseModel):
    n: int
    gallery: int
    accuracy: dict[str, float]  # "1", "25", ... km -> share within
    median_km: float


def great_circle_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise great-circle distance between (n, 2) lat/lon arrays."""
    ua = to_unit_vectors(a[:, 0], a[:, 1])
    ub = to_unit_vectors(b[:, 0], b[:, 1])
    cos = np.clip((ua * ub).sum(axis=1), -1.0, 1.0)
    return np.arccos(cos) * EARTH_RADIUS_KM


def gallery_coordinates(which: str, features: FeatureSet | None = None, train_idx: np.ndarray | None = None) -> np.ndarray:
    """'geoclip' (GeoCLIP's 100K gallery), 'train' (the distinct training coordinates) or a CSV path."""
    if which == "geoclip":
        from retrieval_service.retrieval.geoclip_heads import gallery_coordinates as geoclip_gallery

        return np.asarray(geoclip_gallery(), dtype=np.float32)
    if which == "train":
        if features is None or train_idx is None:
            raise DatasetError("the 'train' gallery needs the training features", "pass --val-gallery geoclip or a CSV")
        return np.unique(features.coords[train_idx], axis=0).astype(np.float32)
    path = Path(which).expanduser()
    frame = read_csv_table(path, missing_hint="pass --val-gallery geoclip, train, or a CSV of LAT/LON coordinates")
    lat = find_column(list(frame.columns), "latitude", LAT_COLUMNS, source=path)
    lon = find_column(list(frame.columns), "longitude", LON_COLUMNS, source=path)
    coords = frame[[lat, lon]].apply(lambda s: s.astype(float)).to_numpy(dtype=np.float32)
    if not len(coords) or np.abs(coords[:, 0]).max() > 90 or np.abs(coords[:, 1]).max() > 180:
        raise DatasetError(f"{path} holds no valid gallery coordinates", "give decimal degrees in LAT/LON columns")
    return coords


def sample_gallery(coords: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """A fixed random sample of ``size`` gallery coordinates (all of them when ``size`` is 0 or more
    than there are), in gallery order: the same sample at every validation of a run."""
    if not size or size >= len(coords):
        return coords
    keep = np.random.default_rng([seed, 7919]).choice(len(coords), size, replace=False)
    return coords[np.sort(keep)]


def to_device(arrays: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for name, array in arrays.items():
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.dtype == torch.float16:
            tensor = tensor.float()
        out[name] = tensor.to(device, non_blocking=True)
    return out


@torch.no_grad()
def encode_gallery(model: FusionModel, coords: np.ndarray, device: torch.device, batch: int = 8192) -> torch.Tensor:
    parts = [model.encode_gps(torch.from_numpy(coords[s : s + batch]).to(device)) for s in range(0, len(coords), batch)]
    return torch.cat(parts).float()


@torch.no_grad()
def validate(
    model: FusionModel,
    features: FeatureSet,
    val_idx: np.ndarray,
    gallery: np.ndarray,
    device: torch.device,
    batch_size: int = 512,
) -> ValidationResult:
    was_training = model.training
    model.eval()
    try:
        gallery_emb = encode_gallery(model, gallery, device)
        names = ("tokens", "pooled", "classmap") if model.seg_encoder is not None else ("tokens", "pooled")
        picks: list[np.ndarray] = []
        for start in range(0, len(val_idx), batch_size):
            arrays = to_device(features.take(val_idx[start : start + batch_size], names), device)
            out = model(arrays["tokens"], arrays["pooled"], arrays.get("classmap"))
            picks.append((out.fused.float() @ gallery_emb.T).argmax(dim=1).cpu().numpy())
    finally:
        model.train(was_training)
    if not picks:
        return ValidationResult(n=0, gallery=len(gallery), accuracy={str(t): 0.0 for t in THRESHOLDS_KM}, median_km=float("nan"))
    predicted = gallery[np.concatenate(picks)]
    errors = great_circle_km(features.coords[val_idx], predicted)
    return ValidationResult(
        n=len(val_idx),
        gallery=len(gallery),
        accuracy={str(t): float(np.mean(errors <= t)) for t in THRESHOLDS_KM},
        median_km=float(np.median(errors)),
    )
