"""Precomputed training features on disk: frozen CLIP tokens, pooled vectors, class maps and
(optionally) text features, in shards of memory-mapped ``.npy`` files.

Layout of a features folder::

    manifest.json            format, FeatureSpec, row count, shard size, source CSV
    rows.csv                 one row per CSV row, in order: id, lat, lon, path, author, place columns
    shards/00000/            tokens.npy (n, T, D) float16, pooled.npy (n, D) float16,
                             classmap.npy (n, G, G) uint8, text.npy (n, D') float16,
                             has_text.npy (n,) bool, ok.npy (n,) bool (False: the image was unreadable)

A shard folder appears only once complete (written under a temporary name, then renamed), so an
interrupted precompute resumes at the first missing shard and a reader never sees half a shard.
Reading a batch touches only the rows it needs (``np.load(mmap_mode='r')``): an epoch costs the
trainable part of the model and the disk reads, never the frozen image tower.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from retrieval_service.core.errors import DatasetError
from retrieval_service.fusion.config import FeatureSpec

logger = logging.getLogger(__name__)

FORMAT = 1
ARRAYS = ("tokens", "pooled", "classmap", "text", "has_text", "ok")


class FeatureManifest(BaseModel):
    format: int = FORMAT
    spec: FeatureSpec
    rows: int
    shard_size: int
    source: str = ""


def _shard_dir(root: Path, index: int) -> Path:
    return root / "shards" / f"{index:05d}"


def _read_manifest(root: Path) -> FeatureManifest:
    path = root / "manifest.json"
    if not path.is_file():
        raise DatasetError(
            f"{root} holds no precomputed features (no manifest.json)",
            "run geoagent train precompute first, or pass its --out folder",
        )
    try:
        manifest = FeatureManifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path} is not a features manifest: {exc}", "precompute again into an empty folder") from exc
    if manifest.format != FORMAT:
        raise DatasetError(
            f"{root} holds features of format {manifest.format}, this version reads {FORMAT}",
            "precompute again into a new folder",
        )
    return manifest


class FeatureWriter:
    """Creates (or re-opens, for a resume) a features folder and writes whole shards."""

    def __init__(self, root: Path, spec: FeatureSpec, rows: pd.DataFrame, shard_size: int, source: str = "") -> None:
        self.root = Path(root)
        self.rows = rows.reset_index(drop=True)
        manifest_path = self.root / "manifest.json"
        if manifest_path.is_file():
            existing = _read_manifest(self.root)
            if existing.spec != spec or existing.rows != len(self.rows) or existing.shard_size != shard_size:
                raise DatasetError(
                    f"{self.root} already holds features made differently ({existing.spec.image_model}, "
                    f"{existing.rows} rows, shards of {existing.shard_size})",
                    "precompute into another --out folder, or delete this one",
                )
            old_ids = pd.read_csv(self.root / "rows.csv", dtype=str, keep_default_na=False)["id"]
            if not old_ids.equals(self.rows["id"].astype(str)):
                raise DatasetError(f"{self.root} was precomputed from other rows", "precompute into another --out folder")
            self.manifest = existing
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.rows.to_csv(self.root / "rows.csv", index=False)
            self.manifest = FeatureManifest(spec=spec, rows=len(self.rows), shard_size=shard_size, source=source)
            tmp = manifest_path.with_suffix(".tmp")
            tmp.write_text(self.manifest.model_dump_json(indent=1))
            tmp.replace(manifest_path)

    @property
    def shard_count(self) -> int:
        return -(-self.manifest.rows // self.manifest.shard_size)

    def bounds(self, index: int) -> tuple[int, int]:
        start = index * self.manifest.shard_size
        return start, min(start + self.manifest.shard_size, self.manifest.rows)

    def done(self, index: int) -> bool:
        return _shard_dir(self.root, index).is_dir()

    def write(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        start, stop = self.bounds(index)
        unknown = set(arrays) - set(ARRAYS)
        if unknown:
            raise ValueError(f"unknown feature arrays {sorted(unknown)}")
        final = _shard_dir(self.root, index)
        tmp = final.with_name(final.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, array in arrays.items():
            if len(array) != stop - start:
                raise ValueError(f"{name} has {len(array)} rows, shard {index} needs {stop - start}")
            np.save(tmp / f"{name}.npy", array)
        tmp.rename(final)


class FeatureSet:
    """Read side: row table, coordinates, and batches gathered from the memory-mapped shards."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = _read_manifest(self.root)
        self.spec = self.manifest.spec
        self.rows = pd.read_csv(self.root / "rows.csv", dtype=str, keep_default_na=False)
        if len(self.rows) != self.manifest.rows:
            raise DatasetError(
                f"{self.root}/rows.csv has {len(self.rows)} rows, the manifest says {self.manifest.rows}", "precompute again"
            )
        self.coords = self.rows[["lat", "lon"]].astype(np.float32).to_numpy()
        self._maps: dict[tuple[int, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.manifest.rows

    @property
    def shard_count(self) -> int:
        return -(-self.manifest.rows // self.manifest.shard_size)

    def missing_shards(self) -> list[int]:
        return [i for i in range(self.shard_count) if not _shard_dir(self.root, i).is_dir()]

    def require_complete(self) -> None:
        missing = self.missing_shards()
        if missing:
            raise DatasetError(
                f"{self.root}: {len(missing)} of {self.shard_count} feature shards are missing (first: {missing[0]})",
                "run geoagent train precompute again with the same arguments: it resumes where it stopped",
            )

    def has(self, name: str) -> bool:
        return (_shard_dir(self.root, 0) / f"{name}.npy").is_file()

    def _array(self, shard: int, name: str) -> np.ndarray:
        key = (shard, name)
        with self._lock:
            if key not in self._maps:
                path = _shard_dir(self.root, shard) / f"{name}.npy"
                if not path.is_file():
                    raise DatasetError(f"feature file {path} is missing", "precompute again into a new folder")
                self._maps[key] = np.load(path, mmap_mode="r")
            return self._maps[key]

    def column(self, name: str) -> np.ndarray:
        """A small per-row array (ok, has_text) over all shards."""
        return np.concatenate([np.asarray(self._array(i, name)) for i in range(self.shard_count)])

    def take(self, indices: np.ndarray, names: tuple[str, ...] = ("tokens", "pooled", "classmap")) -> dict[str, np.ndarray]:
        """Rows ``indices`` (in that order) of each named array, read shard by shard in file order."""
        indices = np.asarray(indices, dtype=np.int64)
        size = self.manifest.shard_size
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        shards = sorted_idx // size
        out: dict[str, np.ndarray] = {}
        for name in names:
            parts = []
            for shard in np.unique(shards):
                local = sorted_idx[shards == shard] - shard * size
                parts.append(np.asarray(self._array(int(shard), name)[local]))
            gathered = np.concatenate(parts) if parts else np.zeros((0,), np.float32)
            result = np.empty_like(gathered)
            result[order] = gathered
            out[name] = result
        return out

    def describe(self) -> dict:
        return json.loads(self.manifest.model_dump_json()) | {"missing_shards": len(self.missing_shards())}
