"""Vector stores: one interface, two real backends.

* ``EdgeStore``: embedded Qdrant (``qdrant-edge-py``), one shard directory per collection under
  ``settings.embedded_qdrant_path``. Shards are created without a write-ahead log, so several
  processes can open the same collection for reading at once (the WAL would hold an exclusive
  lock); writes are made durable by ``flush()`` and serialised across processes by an advisory
  ``fcntl`` lock file (``write_lock``). A reader sees points written by another process after it
  reopens the collection (``refresh``).
* ``ServerStore``: ``qdrant-client`` for a Qdrant server/cluster URL (or ``":memory:"`` in tests).

Every point carries ``location: {lat, lon}`` (geo index); cosine distance; ``country_code`` has a
keyword index.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from retrieval_service.errors import StoreError
from retrieval_service.schemas import GeoFilter
from retrieval_service.settings import Settings

logger = logging.getLogger(__name__)

PointId = int | str
DEFAULT_HNSW_EF = 128
HNSW_M = 16
HNSW_EF_CONSTRUCT = 128
_ID_NAMESPACE = uuid.UUID("6f1d3c1e-3d1a-4d8e-9a57-2b3f6a0c9e11")


def point_id(key: str | int) -> PointId:
    """Qdrant ids are unsigned ints or UUIDs: ints pass through, strings map to a stable UUID5."""
    if isinstance(key, (int, np.integer)) and key >= 0:
        return int(key)
    return str(uuid.uuid5(_ID_NAMESPACE, str(key)))


class Hit(BaseModel):
    """One search result."""

    id: PointId
    score: float
    payload: dict[str, Any]


def _check_vectors(vectors: np.ndarray, n: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != n:
        raise StoreError(f"expected {n} vectors as a 2-d array, got shape {vectors.shape}", "pass one vector per id")
    return vectors


class VectorStore(ABC):
    """A set of named collections of (id, vector, payload) with cosine similarity and geo filters."""

    @abstractmethod
    def has_collection(self, name: str) -> bool: ...

    @abstractmethod
    def create_collection(self, name: str, dim: int) -> None:
        """Create ``name`` for ``dim``-d vectors with the geo and country indexes (no-op if it exists with that dim)."""

    @abstractmethod
    def delete_collection(self, name: str) -> None: ...

    @abstractmethod
    def dim(self, name: str) -> int: ...

    @abstractmethod
    def count(self, name: str) -> int: ...

    @abstractmethod
    def upsert(self, name: str, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None: ...

    @abstractmethod
    def existing_ids(self, name: str, ids: Sequence[PointId]) -> set[PointId]:
        """Which of ``ids`` are already stored."""

    @abstractmethod
    def search(self, name: str, vector: np.ndarray, k: int, geo_filter: GeoFilter | None = None) -> list[Hit]: ...

    def finish_writes(self, name: str) -> None:
        """Called after a bulk load: build indexes, make data durable."""

    @contextlib.contextmanager
    def write_lock(self, name: str) -> Iterator[None]:
        """Exclusive writer access to ``name`` (across processes where that matters)."""
        yield

    def refresh(self, name: str) -> None:
        """See writes made by other processes."""

    def close(self) -> None: ...

    def info(self) -> dict[str, Any]:
        return {}

    def _require(self, name: str) -> None:
        if not self.has_collection(name):
            raise StoreError(f"collection {name!r} does not exist", "build it first (geoagent index build ... for the image database)")


# --------------------------------------------------------------------------- embedded (qdrant-edge)


class EdgeStore(VectorStore):
    """Embedded Qdrant under ``root`` (one shard per collection)."""

    def __init__(self, root: Path, hnsw_ef: int = DEFAULT_HNSW_EF, build_index: bool = True) -> None:
        """``build_index=False`` skips the HNSW build after bulk loads (searches then scan exactly;
        the tests use it to build the 100K gallery in seconds instead of a minute)."""
        self.root = Path(root)
        self.hnsw_ef = hnsw_ef
        self.build_index = build_index
        self._shards: dict[str, Any] = {}
        self._locks: dict[str, Any] = {}

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
                shard = qe.EdgeShard.load(str(self._dir(name)))
            except Exception as exc:  # the Rust side raises a bare Exception
                raise StoreError(
                    f"cannot open embedded Qdrant collection {name!r} at {self._dir(name)}: {exc}",
                    "close other geoagent processes using this data dir, or set GEOAGENT_DATA_DIR to another folder",
                ) from exc
            self._shards[name] = shard
        return shard

    def create_collection(self, name: str, dim: int) -> None:
        import qdrant_edge as qe

        if self.has_collection(name):
            if self.dim(name) != dim:
                raise StoreError(
                    f"collection {name!r} holds {self.dim(name)}-d vectors, not {dim}-d",
                    f"use another collection name or delete {self._dir(name)} and rebuild",
                )
            return
        path = self._dir(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000),
            wal_enabled=False,
        )
        try:
            shard = qe.EdgeShard.create(str(path), config)
            shard.update(qe.UpdateOperation.create_field_index("location", qe.PayloadSchemaType.Geo))
            shard.update(qe.UpdateOperation.create_field_index("country_code", qe.PayloadSchemaType.Keyword))
            shard.flush()
        except Exception as exc:
            raise StoreError(f"cannot create collection {name!r} at {path}: {exc}", "check the data dir is writable") from exc
        self._shards[name] = shard

    def delete_collection(self, name: str) -> None:
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

        vectors = _check_vectors(vectors, len(ids))
        points = [qe.Point(pid, vec.tolist(), payload) for pid, vec, payload in zip(ids, vectors, payloads)]
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
        elif geo_filter.kind == "box":
            cond = qe.FieldCondition(
                key="location",
                geo_bounding_box=qe.GeoBoundingBox(
                    top_left=qe.GeoPoint(lon=geo_filter.min_lon, lat=geo_filter.max_lat),
                    bottom_right=qe.GeoPoint(lon=geo_filter.max_lon, lat=geo_filter.min_lat),
                ),
            )
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
            params=qe.SearchParams(hnsw_ef=max(self.hnsw_ef, k)),
        )
        points = self._shard(name).query(request)
        return [Hit(id=p.id if not isinstance(p.id, uuid.UUID) else str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def finish_writes(self, name: str) -> None:
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
            shard.close()

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    def info(self) -> dict[str, Any]:
        return {"backend": "embedded", "path": str(self.root), "hnsw_ef": self.hnsw_ef}


# --------------------------------------------------------------------------- server (qdrant-client)


class ServerStore(VectorStore):
    """A Qdrant server or cluster through ``qdrant-client`` (``location=":memory:"`` for tests)."""

    def __init__(self, url: str, api_key: str | None = None, hnsw_ef: int = DEFAULT_HNSW_EF, timeout_s: int = 30) -> None:
        from qdrant_client import QdrantClient

        self.url = url
        self.hnsw_ef = hnsw_ef
        if url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"Qdrant at {self.url} failed to {what}: {type(exc).__name__}: {exc}",
                "check the server is running and GEOAGENT_QDRANT_URL / GEOAGENT_QDRANT_API_KEY are right, "
                "or unset GEOAGENT_QDRANT_URL for the embedded store",
            ) from exc

    def has_collection(self, name: str) -> bool:
        return bool(self._call("list collections", self.client.collection_exists, name))

    def create_collection(self, name: str, dim: int) -> None:
        from qdrant_client import models

        if self.has_collection(name):
            if self.dim(name) != dim:
                raise StoreError(f"collection {name!r} holds {self.dim(name)}-d vectors, not {dim}-d", "use another collection name")
            return
        self._call(
            "create a collection",
            self.client.create_collection,
            name,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT),
        )
        if self.url != ":memory:":  # local mode filters without indexes (and warns about them)
            self._call("create the geo index", self.client.create_payload_index, name, "location", models.PayloadSchemaType.GEO)
            self._call("create the country index", self.client.create_payload_index, name, "country_code", models.PayloadSchemaType.KEYWORD)

    def delete_collection(self, name: str) -> None:
        self._call("delete a collection", self.client.delete_collection, name)

    def dim(self, name: str) -> int:
        self._require(name)
        info = self._call("describe a collection", self.client.get_collection, name)
        vectors = info.config.params.vectors
        return int(vectors.size if hasattr(vectors, "size") else next(iter(vectors.values())).size)

    def count(self, name: str) -> int:
        self._require(name)
        return int(self._call("count", self.client.count, name, exact=True).count)

    def upsert(self, name: str, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        from qdrant_client import models

        vectors = _check_vectors(vectors, len(ids))
        points = [models.PointStruct(id=pid, vector=vec.tolist(), payload=payload) for pid, vec, payload in zip(ids, vectors, payloads)]
        self._call("upsert points", self.client.upsert, name, points=points, wait=True)

    def existing_ids(self, name: str, ids: Sequence[PointId]) -> set[PointId]:
        if not ids:
            return set()
        records = self._call("retrieve points", self.client.retrieve, name, ids=list(ids), with_payload=False, with_vectors=False)
        return {r.id for r in records}

    def _filter(self, geo_filter: GeoFilter | None) -> Any:
        from qdrant_client import models

        if geo_filter is None:
            return None
        if geo_filter.kind == "circle":
            cond = models.FieldCondition(
                key="location",
                geo_radius=models.GeoRadius(center=models.GeoPoint(lat=geo_filter.lat, lon=geo_filter.lon), radius=geo_filter.radius_km * 1000.0),
            )
        elif geo_filter.kind == "box":
            cond = models.FieldCondition(
                key="location",
                geo_bounding_box=models.GeoBoundingBox(
                    top_left=models.GeoPoint(lat=geo_filter.max_lat, lon=geo_filter.min_lon),
                    bottom_right=models.GeoPoint(lat=geo_filter.min_lat, lon=geo_filter.max_lon),
                ),
            )
        else:
            cond = models.FieldCondition(key="country_code", match=models.MatchValue(value=geo_filter.country_code))
        return models.Filter(must=[cond])

    def search(self, name: str, vector: np.ndarray, k: int, geo_filter: GeoFilter | None = None) -> list[Hit]:
        from qdrant_client import models

        self._require(name)
        response = self._call(
            "search",
            self.client.query_points,
            name,
            query=np.asarray(vector, dtype=np.float32).ravel().tolist(),
            limit=k,
            query_filter=self._filter(geo_filter),
            with_payload=True,
            search_params=None if self.url == ":memory:" else models.SearchParams(hnsw_ef=max(self.hnsw_ef, k)),
        )
        return [Hit(id=p.id, score=float(p.score), payload=dict(p.payload or {})) for p in response.points]

    def close(self) -> None:
        self.client.close()

    def info(self) -> dict[str, Any]:
        return {"backend": "server", "url": self.url}


def make_store(settings: Settings) -> VectorStore:
    """The store the settings ask for: a server when ``qdrant_url`` is set, else embedded under the data dir."""
    if settings.qdrant_url:
        return ServerStore(settings.qdrant_url, settings.qdrant_api_key)
    return EdgeStore(settings.embedded_qdrant_path)
