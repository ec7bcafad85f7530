"""``EdgeStore``: embedded Qdrant (``qdrant-edge-py``), one shard directory per collection.

Shards are created without a write-ahead log, so several processes can open the same collection for
reading at once (the WAL would hold an exclusive lock); writes are made durable by ``flush()`` and
serialised across processes by an advisory ``fcntl`` lock file (``write_lock``). A reader sees points
written by another process after it reopens the collection (``refresh``). Creation claims the collection's folder atomically
(``mkdir``), and collection metadata lives in the collection's own folder (``geoagent_meta.json``).

Opening a shard tidies its directory (it removes the temporary files a writer is about to rename),
so opening and closing are guarded by a shared ``fcntl`` lock on ``<collection>.io.lock`` and every
write (upsert + flush, optimize) by the exclusive one: ``index build`` and readers in other processes
(``locate``, ``index info``) take turns between batches instead of breaking the writer's flush.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_service.core.errors import StoreError
from retrieval_service.core.types import GeoFilter
from retrieval_service.retrieval.stores.base import CollectionInfo, Hit, PointId, VectorStore, check_vectors
from retrieval_service.retrieval.stores.params import FULL_SCAN_THRESHOLD_KB, CollectionParams, SearchParams

META_FILE = "geoagent_meta.json"
IO_WAIT_S = 600.0
"""How long opening a collection waits for another process's write (an HNSW build can take minutes)."""


class EdgeStore(VectorStore):
    """Embedded Qdrant under ``root`` (one shard per collection)."""

    def __init__(
        self,
        root: Path,
        hnsw_ef: int | None = None,
        build_index: bool = True,
        *,
        params: CollectionParams | None = None,
        search_params: SearchParams | None = None,
    ) -> None:
        """``build_index=False`` skips the HNSW build after bulk loads (searches then scan exactly;
        the tests use it to build the 100K gallery in seconds instead of a minute). ``params``: the
        layout of collections created without one; ``search_params``: hnsw_ef, rescoring, oversampling
        (``hnsw_ef`` overrides its hnsw_ef)."""
        self.root = Path(root)
        self.params = params or CollectionParams()
        self.search_params = search_params or SearchParams()
        self.hnsw_ef = self.search_params.hnsw_ef if hnsw_ef is None else hnsw_ef
        self.build_index = build_index
        self._shards: dict[str, Any] = {}
        self._locks: dict[str, Any] = {}
        self._io_held: dict[str, int] = {}  # name -> fcntl mode this instance holds (re-entrant)
        self._io_guard = threading.RLock()
        self._seen: dict[str, int | None] = {}  # name -> the "opened" stamp after our last write

    def _opened_stamp(self, name: str) -> int | None:
        """When a process last opened the collection (the mtime of ``<collection>.opened``)."""
        try:
            return (self.root / f"{self._dir(name).name}.opened").stat().st_mtime_ns
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def _io(self, name: str, mode: int) -> Iterator[None]:
        """Hold ``<collection>.io.lock`` shared (open/close) or exclusive (writes), waiting for others."""
        with self._io_guard:
            held = self._io_held.get(name)
            if held == fcntl.LOCK_EX or held == mode:
                yield
                return
            path = self.root / f"{self._dir(name).name}.io.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as handle:
                deadline = time.monotonic() + IO_WAIT_S
                while True:
                    try:
                        fcntl.flock(handle, mode | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise StoreError(
                                f"collection {name!r} has been busy in another process for {IO_WAIT_S:.0f} s",
                                "wait for the other geoagent index/gallery build to finish, or use another GEOAGENT_DATA_DIR",
                            ) from None
                        time.sleep(0.02)
                self._io_held[name] = mode
                if mode == fcntl.LOCK_EX and held is None and self._opened_stamp(name) != self._seen.get(name):
                    # another process opened (and tidied) the shard since our last write: reopen it,
                    # or its stale in-memory state breaks the next flush
                    stale = self._shards.pop(name, None)
                    if stale is not None:
                        stale.close()
                try:
                    yield
                finally:
                    if mode == fcntl.LOCK_EX and held is None:
                        self._seen[name] = self._opened_stamp(name)
                    if held is None:
                        self._io_held.pop(name, None)
                        fcntl.flock(handle, fcntl.LOCK_UN)
                    else:
                        self._io_held[name] = held
                        fcntl.flock(handle, held)

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise StoreError(f"invalid collection name {name!r}", "use letters, digits, '-' and '_'")
        return self.root / name

    def has_collection(self, name: str) -> bool:
        return (self._dir(name) / "edge_config.json").is_file()

    def _shard(self, name: str) -> Any:
        import qdrant_edge as qe

        shard = self._shards.get(name)
        if shard is None:
            self._require(name)
            try:
                with self._io(name, fcntl.LOCK_SH):
                    shard = qe.EdgeShard.load(str(self._dir(name)))
                    (self.root / f"{self._dir(name).name}.opened").touch()
            except Exception as exc:  # the Rust side raises a bare Exception
                raise StoreError(
                    f"cannot open embedded Qdrant collection {name!r} at {self._dir(name)}: {exc}",
                    "close other geoagent processes using this data dir, or set GEOAGENT_DATA_DIR to another folder",
                ) from exc
            self._shards[name] = shard
        return shard

    def create_collection(self, name: str, dim: int, params: CollectionParams | None = None) -> bool:
        import qdrant_edge as qe

        params = params or self.params
        if self.has_collection(name):
            if self.dim(name) != dim:
                raise StoreError(
                    f"collection {name!r} holds {self.dim(name)}-d vectors, not {dim}-d",
                    f"use another collection name or delete {self._dir(name)} and rebuild",
                )
            return False
        path = self._dir(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()  # the atomic claim: of concurrent creators exactly one succeeds
        except FileExistsError:
            return False  # another process is creating it right now
        quantization = None
        if params.quantization == "int8":
            quantization = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=params.quantile, always_ram=True)
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, on_disk=params.on_disk),
            hnsw_config=qe.HnswIndexConfig(
                m=params.hnsw_m, ef_construct=params.hnsw_ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
            ),
            quantization_config=quantization,
            optimizers=(
                qe.EdgeOptimizersConfig(indexing_threshold=params.indexing_threshold_kb) if params.indexing_threshold_kb else None
            ),
            wal_enabled=False,
        )
        try:
            with self._io(name, fcntl.LOCK_EX):
                shard = qe.EdgeShard.create(str(path), config)
                shard.update(qe.UpdateOperation.create_field_index("location", qe.PayloadSchemaType.Geo))
                shard.update(qe.UpdateOperation.create_field_index("country_code", qe.PayloadSchemaType.Keyword))
                shard.flush()
        except Exception as exc:
            shutil.rmtree(path, ignore_errors=True)  # ours: claimed by this call
            raise StoreError(f"cannot create collection {name!r} at {path}: {exc}", "check the data dir is writable") from exc
        self._shards[name] = shard
        return True

    def describe(self, name: str, *, fresh: bool = False) -> CollectionInfo | None:
        if not self.has_collection(name):
            return None
        if fresh:
            self.refresh(name)
        meta_path = self._dir(name) / META_FILE
        try:
            metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            metadata = {}
        return CollectionInfo(name=name, dim=self.dim(name), points=self.count(name), metadata=metadata)

    def set_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        self._require(name)
        path = self._dir(name) / META_FILE
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(metadata))
        tmp.replace(path)

    def delete_collection(self, name: str) -> None:
        with self._io(name, fcntl.LOCK_EX):
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._dir(name), ignore_errors=True)

    def dim(self, name: str) -> int:
        self._require(name)
        config = json.loads((self._dir(name) / "edge_config.json").read_text())
        vectors = config.get("vectors") or config.get("vector_data") or {}
        for params in vectors.values():
            return int(params["size"])
        raise StoreError(f"collection {name!r} has no dense vector config", f"delete {self._dir(name)} and rebuild")

    def count(self, name: str) -> int:
        return int(self._shard(name).info().points_count)

    def upsert(self, name: str, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        import qdrant_edge as qe

        vectors = check_vectors(vectors, len(ids))
        points = [qe.Point(pid, vec.tolist(), payload) for pid, vec, payload in zip(ids, vectors, payloads, strict=False)]
        with self._io(name, fcntl.LOCK_EX):
            shard = self._shard(name)
            shard.update(qe.UpdateOperation.upsert_points(points))
            shard.flush()

    def existing_ids(self, name: str, ids: Sequence[PointId]) -> set[PointId]:
        if not ids:
            return set()
        records = self._shard(name).retrieve(list(ids), with_payload=False, with_vector=False)
        return {r.id if not isinstance(r.id, uuid.UUID) else str(r.id) for r in records}

    def _filter(self, geo_filter: GeoFilter | None) -> Any:
        import qdrant_edge as qe

        if geo_filter is None:
            return None
        if geo_filter.kind == "circle":
            cond = qe.FieldCondition(
                key="location",
                geo_radius=qe.GeoRadius(qe.GeoPoint(lon=geo_filter.lon, lat=geo_filter.lat), geo_filter.radius_km * 1000.0),
            )
        elif geo_filter.kind == "box":  # split at the antimeridian and into spans under 180 degrees
            parts = [
                qe.FieldCondition(
                    key="location",
                    geo_bounding_box=qe.GeoBoundingBox(
                        top_left=qe.GeoPoint(lon=lon0, lat=lat1), bottom_right=qe.GeoPoint(lon=lon1, lat=lat0)
                    ),
                )
                for lat0, lat1, lon0, lon1 in geo_filter.boxes()
            ]
            return qe.Filter(should=parts)
        else:
            cond = qe.FieldCondition(key="country_code", match=qe.MatchValue(geo_filter.country_code))
        return qe.Filter(must=[cond])

    def search(self, name: str, vector: np.ndarray, k: int, geo_filter: GeoFilter | None = None) -> list[Hit]:
        import qdrant_edge as qe

        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).ravel().tolist()),
            with_payload=True,
            filter=self._filter(geo_filter),
            params=qe.SearchParams(
                hnsw_ef=max(self.hnsw_ef, k),
                quantization=qe.QuantizationSearchParams(
                    rescore=self.search_params.rescore, oversampling=self.search_params.oversampling
                ),
            ),
        )
        points = self._shard(name).query(request)
        return [
            Hit(id=p.id if not isinstance(p.id, uuid.UUID) else str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in points
        ]

    def finish_writes(self, name: str) -> None:
        with self._io(name, fcntl.LOCK_EX):
            shard = self._shard(name)
            if self.build_index:
                shard.optimize()
            shard.flush()

    @contextlib.contextmanager
    def write_lock(self, name: str) -> Iterator[None]:
        path = self._dir(name).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(
                    f"another process is writing collection {name!r} ({path} is locked)",
                    "wait for the other geoagent index/gallery build to finish, or use another GEOAGENT_DATA_DIR",
                ) from exc
            try:
                self.refresh(name)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def refresh(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            with self._io(name, fcntl.LOCK_SH):
                shard.close()
                if self._io_held.get(name) != fcntl.LOCK_EX:
                    (self.root / f"{self._dir(name).name}.opened").touch()

    def close(self) -> None:
        for name in list(self._shards):
            self.refresh(name)

    def info(self) -> dict[str, Any]:
        return {
            "backend": "embedded",
            "path": str(self.root),
            "hnsw_ef": self.hnsw_ef,
            "rescore": self.search_params.rescore,
            "oversampling": self.search_params.oversampling,
        }
