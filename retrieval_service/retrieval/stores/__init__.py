"""Vector stores behind one interface: embedded Qdrant (``EdgeStore``) or a Qdrant server or cluster
(``ServerStore``), picked by ``make_store`` from the settings."""

from __future__ import annotations

from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores.base import CollectionInfo, Hit, PointId, Query, VectorStore, point_id
from retrieval_service.retrieval.stores.edge import EdgeStore
from retrieval_service.retrieval.stores.params import (
    CollectionParams,
    SearchParams,
    database_params,
    default_params,
    search_params,
)
from retrieval_service.retrieval.stores.server import ServerStore


def make_store(settings: RetrievalSettings) -> VectorStore:
    """The store the settings ask for: a server when ``qdrant_url`` is set, else embedded under the data dir."""
    if settings.qdrant_url:
        return ServerStore(
            settings.qdrant_url,
            settings.qdrant_api_key,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            metadata_ttl_s=settings.qdrant_metadata_ttl_s,
            params=default_params(settings),
            search_params=search_params(settings),
        )
    return EdgeStore(settings.embedded_qdrant_path, params=default_params(settings), search_params=search_params(settings))


__all__ = [
    "CollectionInfo",
    "CollectionParams",
    "EdgeStore",
    "Hit",
    "PointId",
    "Query",
    "SearchParams",
    "ServerStore",
    "VectorStore",
    "database_params",
    "default_params",
    "make_store",
    "point_id",
    "search_params",
]
