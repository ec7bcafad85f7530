"""The vector-store interface (``VectorStore``), point ids and search hits.

Two real backends implement it:

* ``EdgeStore``: embedded Qdrant (``qdrant-edge-py``), one shard directory per collection under
  ``settings.embedded_qdrant_path``. Shards are created without a write-ahead log, so several
  processes can open the same collection for reading at once (the WAL would hold an exclusive
  lock); writes are made durable by ``flush()`` and serialised across processes by an advisory
  ``fcntl`` lock file (``write_lock``). A reader sees points written by another process after it
  reopens the collection (``refresh``).
* ``ServerStore``: ``qdrant-client`` for a Qdrant server/cluster URL (or ``":memory:"`` in tests).

``create_collection`` reports whether *this call* created the collection (atomically at the store),
``describe`` gives a collection's size and metadata in one call (servers cache it per store), and
``search_batch`` sends several queries on one collection as one request. Collection metadata is
where builds record that they are complete (``retrieval_service.retrieval.readiness``).

Every point carries ``location: {lat, lon}`` (geo index); cosine distance; ``country_code`` has a
keyword index. A collection's layout (HNSW parameters, int8 quantization, originals on disk) is a
``CollectionParams`` given at creation; how a store searches is its ``SearchParams`` (``params.py``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from retrieval_service.core.errors import StoreError
from retrieval_service.core.types import GeoFilter
from retrieval_service.retrieval.stores.params import CollectionParams

logger = logging.getLogger(__name__)

PointId = int | str
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


@dataclass(frozen=True)
class Query:
    """One nearest-neighbour query of a batch: ``k`` points nearest to ``vector`` (optionally filtered)."""

    vector: np.ndarray
    k: int
    geo_filter: GeoFilter | None = None


class CollectionInfo(BaseModel):
    """What one call tells about a collection: vector size, (approximate) point count, metadata."""

    name: str
    dim: int
    points: int
    metadata: dict[str, Any] = Field(default_factory=dict)


def check_vectors(vectors: np.ndarray, n: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != n:
        raise StoreError(f"expected {n} vectors as a 2-d array, got shape {vectors.shape}", "pass one vector per id")
    return vectors


class VectorStore(ABC):
    """A set of named collections of (id, vector, payload) with cosine similarity and geo filters."""

    @abstractmethod
    def has_collection(self, name: str) -> bool: ...

    @abstractmethod
    def create_collection(self, name: str, dim: int, params: CollectionParams | None = None) -> bool:
        """Create ``name`` for ``dim``-d vectors with the geo and country indexes, laid out as ``params``
        (the store's defaults when None). True when this call created it; False when it already existed
        with that dim, whatever its layout (atomic: of concurrent callers, across processes and hosts
        sharing the store, exactly one gets True)."""

    @abstractmethod
    def describe(self, name: str, *, fresh: bool = False) -> CollectionInfo | None:
        """Size and metadata of ``name`` (None when absent); ``fresh`` bypasses any cache and sees
        writes made by other processes."""

    @abstractmethod
    def set_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        """Store ``metadata`` with the collection itself (replacing the previous one)."""

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

    def search_batch(self, name: str, queries: Sequence[Query]) -> list[list[Hit]]:
        """The hits of each query, in order; stores with a network hop send them as one request."""
        return [self.search(name, q.vector, q.k, q.geo_filter) for q in queries]

    def finish_writes(self, name: str) -> None:  # noqa: B027 (a hook: nothing to do for most stores)
        """Called after a bulk load: build indexes, make data durable."""

    @contextlib.contextmanager
    def write_lock(self, name: str) -> Iterator[None]:
        """Exclusive writer access to ``name`` (across processes where that matters)."""
        yield

    def refresh(self, name: str) -> None:  # noqa: B027 (a hook: nothing to do for most stores)
        """See writes made by other processes."""

    def close(self) -> None:  # noqa: B027 (a hook: nothing to release for most stores)
        """Release the store's resources."""

    def info(self) -> dict[str, Any]:
        return {}

    def _require(self, name: str) -> None:
        if not self.has_collection(name):
            raise StoreError(
                f"collection {name!r} does not exist", "build it first (geoagent index build ... for the image database)"
            )
