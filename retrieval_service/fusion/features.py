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
The manifest and the row table are written the same way, so several precompute processes can fill
one shared folder (each its own shards); folders written apart are joined by ``merge_features``.
Reading a batch touches only the rows it needs (``np.load(mmap_mode='r')``): an epoch costs the
trainable part of the model and the disk reads, never the frozen image tower. A features folder
may also be an fsspec URL (object storage), read through a local cache (``storage``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from retrieval_service.core.errors import DatasetError
from retrieval_service.fusion.config import FeatureSpec
from retrieval_service.fusion.storage import FeatureFiles

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


def _parse_manifest(root: str | Path, text: str | None) -> FeatureManifest:
    if text is None:
        raise DatasetError(
            f"{root} holds no precomputed features (no manifest.json)",
            "run geoagent train precompute first, or pass its --out folder",
        )
    try:
        manifest = FeatureManifest.model_validate_json(text)
    except ValueError as exc:
        raise DatasetError(
            f"{root}/manifest.json is not a features manifest: {exc}", "precompute again into an empty folder"
        ) from exc
    if manifest.format != FORMAT:
        raise DatasetError(
            f"{root} holds features of format {manifest.format}, this version reads {FORMAT}",
            "precompute again into a new folder",
        )
    return manifest


def _read_manifest(root: Path) -> FeatureManifest:
    path = root / "manifest.json"
    return _parse_manifest(root, path.read_text() if path.is_file() else None)


def _replace_text(path: Path, write) -> None:
    """Write a file under a name of this process, then rename it over ``path`` (atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(path)


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
        else:  # processes starting together each write the same two files; the manifest comes last
            self.root.mkdir(parents=True, exist_ok=True)
            _replace_text(self.root / "rows.csv", lambda tmp: self.rows.to_csv(tmp, index=False))
            self.manifest = FeatureManifest(spec=spec, rows=len(self.rows), shard_size=shard_size, source=source)
            _replace_text(manifest_path, lambda tmp: tmp.write_text(self.manifest.model_dump_json(indent=1)))

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
    """Read side: row table, coordinates, and batches gathered from the memory-mapped shards. ``root``
    is a folder or an fsspec URL; ``cache_dir`` is where a URL's files are cached."""

    def __init__(self, root: str | Path, cache_dir: Path | None = None) -> None:
        self.files = FeatureFiles(root, cache_dir)
        self.root: str | Path = root if self.files.remote else Path(root)
        self.manifest = _parse_manifest(root, self.files.read_text("manifest.json"))
        self.spec = self.manifest.spec
        table = self.files.read_text("rows.csv")
        if table is None:
            raise DatasetError(f"{root} has a manifest but no rows.csv", "precompute again into a new folder")
        self.rows = pd.read_csv(io.StringIO(table), dtype=str, keep_default_na=False)
        if len(self.rows) != self.manifest.rows:
            raise DatasetError(
                f"{root}/rows.csv has {len(self.rows)} rows, the manifest says {self.manifest.rows}", "precompute again"
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
        present = self.files.shard_names()
        return [i for i in range(self.shard_count) if f"{i:05d}" not in present]

    def require_complete(self) -> None:
        missing = self.missing_shards()
        if missing:
            raise DatasetError(
                f"{self.root}: {len(missing)} of {self.shard_count} feature shards are missing (first: {missing[0]})",
                "run geoagent train precompute again with the same arguments: it resumes where it stopped",
            )

    def has(self, name: str) -> bool:
        return self.files.exists(f"shards/00000/{name}.npy")

    def _array(self, shard: int, name: str) -> np.ndarray:
        key = (shard, name)
        with self._lock:
            found = self._maps.get(key)
        if found is not None:
            return found
        relative = f"shards/{shard:05d}/{name}.npy"
        if not self.files.remote and not self.files.exists(relative):
            raise DatasetError(f"feature file {self.root}/{relative} is missing", "precompute again into a new folder")
        array = np.load(self.files.local(relative), mmap_mode="r")  # a remote file is fetched once, outside the lock
        with self._lock:
            return self._maps.setdefault(key, array)

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


def merge_features(parts: list[Path], out: Path, *, move: bool = False) -> FeatureSet:
    """Join features folders that precompute processes wrote apart (``--shard I/N`` on machines
    without a shared disk) into ``out``: their manifests and rows must agree; every shard is copied
    (or moved) once. ``out`` may be one of the parts. Returns the joined set (complete or not)."""
    if not parts:
        raise DatasetError("no features folders to merge", "pass the --out folders of the precompute processes")
    manifests = [_read_manifest(Path(p)) for p in parts]
    first = manifests[0]
    for part, manifest in zip(parts, manifests, strict=True):
        if (manifest.spec, manifest.rows, manifest.shard_size) != (first.spec, first.rows, first.shard_size):
            raise DatasetError(
                f"{part} holds features made differently from {parts[0]} ({manifest.spec.image_model}, {manifest.rows} rows, "
                f"shards of {manifest.shard_size})",
                "merge only the folders of one precompute (the same CSV and options, different --shard)",
            )
        if (Path(part) / "rows.csv").read_bytes() != (Path(parts[0]) / "rows.csv").read_bytes():
            raise DatasetError(
                f"{part} was precomputed from other rows than {parts[0]}", "merge only the folders of one precompute"
            )
    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").is_file():
        existing = _read_manifest(out)
        if (existing.spec, existing.rows, existing.shard_size) != (first.spec, first.rows, first.shard_size):
            raise DatasetError(f"{out} already holds other features", "merge into a new or empty folder")
    else:
        shutil.copyfile(Path(parts[0]) / "rows.csv", out / "rows.csv")
        _replace_text(out / "manifest.json", lambda tmp: tmp.write_text(first.model_dump_json(indent=1)))
    for part in parts:
        if Path(part).resolve() == out.resolve():
            continue
        for shard in sorted(FeatureFiles(part).shard_names()):
            final = out / "shards" / shard
            if final.is_dir():
                continue
            tmp = final.with_name(shard + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            source = Path(part) / "shards" / shard
            if move:
                shutil.move(str(source), str(tmp))
            else:
                shutil.copytree(source, tmp)
            tmp.rename(final)
    merged = FeatureSet(out)
    logger.info("merged %d folders into %s (%d shards missing)", len(parts), out, len(merged.missing_shards()))
    return merged
