"""A generated feature set whose location is recoverable from the inputs: for checking that training
really learns (tests, ``evals/bench_fusion.py``) without CLIP weights or any benchmark photo.

Photos are drawn around ``regions`` centres spread over the globe (jitter of ~1 degree). Each region
has its own "look":

* ``view='image'``: the CLIP tokens carry the region (a fixed random pattern per region plus noise);
  the class maps are random.
* ``view='segmentation'``: the CLIP tokens are pure noise; only the class map carries the region
  (its left half shows one class and its right half another, chosen by the region, with a share of
  the cells flipped to random classes). A model without the segmentation view cannot beat the prior.

The result is a features folder in the same layout ``precompute`` writes, so the real trainer,
validation and checkpoints run on it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from retrieval_service.fusion.config import FeatureSpec
from retrieval_service.fusion.features import FeatureSet, FeatureWriter


def region_centres(regions: int, seed: int = 0) -> np.ndarray:
    """``regions`` (lat, lon) centres at least ~2,500 km apart (a Fibonacci lattice, rotated by the seed)."""
    i = np.arange(regions) + 0.5
    lat = np.degrees(np.arcsin(np.clip(1 - 2 * i / regions, -1, 1))) * 0.8  # keep away from the poles
    lon = (np.degrees(np.pi * (1 + 5**0.5) * i) + 37.0 * seed) % 360 - 180
    return np.stack((lat, lon), axis=1)


def write_synthetic_features(
    root: Path,
    *,
    rows: int = 600,
    regions: int = 8,
    view: Literal["image", "segmentation"] = "image",
    token_grid: int = 2,
    token_dim: int = 32,
    seg_grid: int = 8,
    classes: int = 6,
    noise: float = 1.0,
    flip: float = 0.2,
    shard_size: int = 256,
    seed: int = 0,
) -> FeatureSet:
    rng = np.random.default_rng(seed)
    centres = region_centres(regions, seed)
    region = rng.integers(0, regions, rows)
    coords = centres[region] + rng.normal(0, 1.0, (rows, 2))
    coords[:, 0] = np.clip(coords[:, 0], -89, 89)
    coords[:, 1] = (coords[:, 1] + 180) % 360 - 180
    n_tokens = token_grid * token_grid
    patterns = rng.normal(0, 1, (regions, n_tokens, token_dim))
    tokens = rng.normal(0, noise, (rows, n_tokens, token_dim))
    if view == "image":
        tokens += patterns[region]
        classmap = rng.integers(0, classes, (rows, seg_grid, seg_grid))
    else:
        left, right = region % classes, (region // classes + region) % classes
        classmap = np.empty((rows, seg_grid, seg_grid), np.int64)
        classmap[:, :, : seg_grid // 2] = left[:, None, None]
        classmap[:, :, seg_grid // 2 :] = right[:, None, None]
        flipped = rng.random(classmap.shape) < flip
        classmap[flipped] = rng.integers(0, classes, int(flipped.sum()))
    pooled = tokens.mean(axis=1)
    spec = FeatureSpec(
        image_model="synthetic",
        image_pretrained="none",
        token_grid=token_grid,
        token_dim=token_dim,
        pooled_dim=token_dim,
        seg_backend="synthetic",
        seg_model=None,
        seg_labels=tuple(f"class{i}" for i in range(classes)),
        seg_grid=seg_grid,
    )
    table = pd.DataFrame(
        {
            "id": [f"s{i:06d}" for i in range(rows)],
            "lat": coords[:, 0],
            "lon": coords[:, 1],
            "path": "",
            "author": [f"a{i % 97}" for i in range(rows)],
            "city": "",
            "region": [f"r{r}" for r in region],
            "country": "",
        }
    )
    writer = FeatureWriter(Path(root), spec, table, shard_size, source=f"synthetic:{view}")
    for shard in range(writer.shard_count):
        a, b = writer.bounds(shard)
        writer.write(
            shard,
            {
                "tokens": tokens[a:b].astype(np.float16),
                "pooled": pooled[a:b].astype(np.float16),
                "classmap": classmap[a:b].astype(np.uint8),
                "ok": np.ones(b - a, bool),
            },
        )
    return FeatureSet(root)
