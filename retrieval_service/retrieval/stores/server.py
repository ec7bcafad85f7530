"""``ServerStore``: a Qdrant server or cluster through ``qdrant-client`` (``":memory:"`` in tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval_service.core.errors import StoreError
from retrieval_service.core.types import GeoFilter
from retrieval_service.retrieval.stores.base import (
    DEFAULT_HNSW_EF,
    HNSW_EF_CONSTRUCT,
    HNSW_M,
    Hit,
    PointId,
    VectorStore,
    check_vectors,
)

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

        vectors = check_vectors(vectors, len(ids))
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
        elif geo_filter.kind == "box":  # split at the antimeridian and into spans under 180 degrees
            parts = [
                models.FieldCondition(key="location", geo_bounding_box=models.GeoBoundingBox(
                    top_left=models.GeoPoint(lat=lat1, lon=lon0), bottom_right=models.GeoPoint(lat=lat0, lon=lon1)))
                for lat0, lat1, lon0, lon1 in geo_filter.boxes()
            ]
            return models.Filter(should=parts)
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
