"""``ServerStore``: a Qdrant server or cluster through ``qdrant-client`` (``":memory:"`` in tests).

Built for many clients sharing one server: collections are created with the settings' shard number
and replication factor, creation is atomic (the server refuses a second create, so exactly one
client gets ``True``), collection descriptions are cached per store for ``metadata_ttl_s`` seconds
(a search then costs no metadata round trip), and ``search_batch`` sends a collection's queries as
one ``query_batch_points`` request.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from cachetools import TTLCache

from retrieval_service.core.errors import StoreError
from retrieval_service.core.types import GeoFilter
from retrieval_service.retrieval.stores.base import CollectionInfo, Hit, PointId, Query, VectorStore, check_vectors
from retrieval_service.retrieval.stores.params import FULL_SCAN_THRESHOLD_KB, CollectionParams, SearchParams

_ABSENT = object()


class ServerStore(VectorStore):
    """A Qdrant server or cluster through ``qdrant-client`` (``url=":memory:"`` for tests; ``client``
    shares one ``QdrantClient`` between stores, as two processes share one server)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        hnsw_ef: int | None = None,
        timeout_s: int = 30,
        *,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        metadata_ttl_s: float = 10.0,
        client: Any = None,
        params: CollectionParams | None = None,
        search_params: SearchParams | None = None,
    ) -> None:
        from qdrant_client import QdrantClient

        self.url = url
        self.params = params or CollectionParams()
        self.search_params = search_params or SearchParams()
        self.hnsw_ef = self.search_params.hnsw_ef if hnsw_ef is None else hnsw_ef
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        # qdrant-client's local mode (also when ``client`` is one)
        self.local = url == ":memory:" or type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
        self._owns_client = client is None
        if client is not None:
            self.client = client
        elif url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s)
        self._described: TTLCache = TTLCache(maxsize=256, ttl=metadata_ttl_s)
        self._cache_lock = threading.Lock()

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

    # ------------------------------------------------------------------ metadata (cached)
    def _forget(self, name: str) -> None:
        with self._cache_lock:
            self._described.pop(name, None)

    def describe(self, name: str, *, fresh: bool = False) -> CollectionInfo | None:
        if not fresh:
            with self._cache_lock:
                cached = self._described.get(name, _ABSENT)
            if cached is not _ABSENT:
                return cached
        if not self._call("list collections", self.client.collection_exists, name):
            info = None
        else:
            raw = self._call("describe a collection", self.client.get_collection, name)
            vectors = raw.config.params.vectors
            dim = int(vectors.size if hasattr(vectors, "size") else next(iter(vectors.values())).size)
            info = CollectionInfo(name=name, dim=dim, points=int(raw.points_count or 0), metadata=dict(raw.config.metadata or {}))
        with self._cache_lock:
            self._described[name] = info
        return info

    def has_collection(self, name: str) -> bool:
        return self.describe(name) is not None

    def dim(self, name: str) -> int:
        self._require(name)
        return self.describe(name).dim  # type: ignore[union-attr]

    def set_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        self._call("store collection metadata", self.client.update_collection, name, metadata=metadata)
        self._forget(name)

    # ------------------------------------------------------------------ writes
    def create_collection(self, name: str, dim: int, params: CollectionParams | None = None) -> bool:
        from qdrant_client import models

        params = params or self.params
        existing = self.describe(name, fresh=True)
        if existing is None:
            quantization = None
            if params.quantization == "int8":
                quantization = models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=params.quantile, always_ram=True)
                )
            try:
                self.client.create_collection(
                    name,
                    vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=params.on_disk),
                    hnsw_config=models.HnswConfigDiff(
                        m=params.hnsw_m, ef_construct=params.hnsw_ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
                    ),
                    quantization_config=quantization,
                    optimizers_config=(
                        models.OptimizersConfigDiff(indexing_threshold=params.indexing_threshold_kb)
                        if params.indexing_threshold_kb
                        else None
                    ),
                    shard_number=self.shard_number,
                    replication_factor=self.replication_factor,
                )
            except Exception as exc:  # another client created it first (HTTP 409), or the server failed
                existing = self.describe(name, fresh=True)
                if existing is None:
                    raise StoreError(
                        f"Qdrant at {self.url} failed to create collection {name!r}: {type(exc).__name__}: {exc}",
                        "check the server is running and that GEOAGENT_QDRANT_SHARD_NUMBER / "
                        "GEOAGENT_QDRANT_REPLICATION_FACTOR fit the cluster (replication <= nodes)",
                    ) from exc
            else:
                self._forget(name)
                if not self.local:  # local mode filters without indexes (and warns about them)
                    self._call(
                        "create the geo index", self.client.create_payload_index, name, "location", models.PayloadSchemaType.GEO
                    )
                    self._call(
                        "create the country index",
                        self.client.create_payload_index,
                        name,
                        "country_code",
                        models.PayloadSchemaType.KEYWORD,
                    )
                return True
        if existing.dim != dim:
            raise StoreError(f"collection {name!r} holds {existing.dim}-d vectors, not {dim}-d", "use another collection name")
        return False

    def delete_collection(self, name: str) -> None:
        self._call("delete a collection", self.client.delete_collection, name)
        self._forget(name)

    def count(self, name: str) -> int:
        self._require(name)
        return int(self._call("count", self.client.count, name, exact=True).count)

    def upsert(self, name: str, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        from qdrant_client import models

        vectors = check_vectors(vectors, len(ids))
        points = [
            models.PointStruct(id=pid, vector=vec.tolist(), payload=payload)
            for pid, vec, payload in zip(ids, vectors, payloads, strict=False)
        ]
        self._call("upsert points", self.client.upsert, name, points=points, wait=True)
        self._forget(name)

    def existing_ids(self, name: str, ids: Sequence[PointId]) -> set[PointId]:
        if not ids:
            return set()
        records = self._call("retrieve points", self.client.retrieve, name, ids=list(ids), with_payload=False, with_vectors=False)
        return {r.id for r in records}

    # ------------------------------------------------------------------ search
    def _filter(self, geo_filter: GeoFilter | None) -> Any:
        from qdrant_client import models

        if geo_filter is None:
            return None
        if geo_filter.kind == "circle":
            cond = models.FieldCondition(
                key="location",
                geo_radius=models.GeoRadius(
                    center=models.GeoPoint(lat=geo_filter.lat, lon=geo_filter.lon), radius=geo_filter.radius_km * 1000.0
                ),
            )
        elif geo_filter.kind == "box":  # split at the antimeridian and into spans under 180 degrees
            parts = [
                models.FieldCondition(
                    key="location",
                    geo_bounding_box=models.GeoBoundingBox(
                        top_left=models.GeoPoint(lat=lat1, lon=lon0), bottom_right=models.GeoPoint(lat=lat0, lon=lon1)
                    ),
                )
                for lat0, lat1, lon0, lon1 in geo_filter.boxes()
            ]
            return models.Filter(should=parts)
        else:
            cond = models.FieldCondition(key="country_code", match=models.MatchValue(value=geo_filter.country_code))
        return models.Filter(must=[cond])

    def search_batch(self, name: str, queries: Sequence[Query]) -> list[list[Hit]]:
        from qdrant_client import models

        if not queries:
            return []
        self._require(name)
        requests = [
            models.QueryRequest(
                query=np.asarray(q.vector, dtype=np.float32).ravel().tolist(),
                limit=q.k,
                filter=self._filter(q.geo_filter),
                with_payload=True,
                params=None if self.local else self._search_params(q.k),
            )
            for q in queries
        ]
        responses = self._call("search", self.client.query_batch_points, name, requests=requests)
        return [[Hit(id=p.id, score=float(p.score), payload=dict(p.payload or {})) for p in r.points] for r in responses]

    def _search_params(self, k: int) -> Any:
        from qdrant_client import models

        return models.SearchParams(
            hnsw_ef=max(self.hnsw_ef, k),
            quantization=models.QuantizationSearchParams(
                rescore=self.search_params.rescore, oversampling=self.search_params.oversampling
            ),
        )

    def search(self, name: str, vector: np.ndarray, k: int, geo_filter: GeoFilter | None = None) -> list[Hit]:
        return self.search_batch(name, [Query(vector, k, geo_filter)])[0]

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def info(self) -> dict[str, Any]:
        return {
            "backend": "server",
            "url": self.url,
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
            "hnsw_ef": self.hnsw_ef,
            "rescore": self.search_params.rescore,
            "oversampling": self.search_params.oversampling,
        }
