"""How a collection is laid out and searched: HNSW parameters, scalar (int8) quantization with the
original vectors on disk, and the search-time knobs (``hnsw_ef``, rescoring, oversampling).

Both stores build their Qdrant configuration from these two models, so an embedded collection and
one on a server or cluster get the same layout from the same settings. With ``quantization='int8'``
Qdrant keeps an int8 copy of every vector in RAM (a quarter of float32) for the HNSW search and,
with ``on_disk=True``, leaves the float32 originals memory-mapped on disk; with ``rescore=True`` the
``oversampling * k`` best int8 candidates are re-scored with the originals, so the order of the
returned hits is by exact cosine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from retrieval_service.retrieval.settings import RetrievalSettings

DEFAULT_HNSW_EF = 128
HNSW_M = 16
HNSW_EF_CONSTRUCT = 128
FULL_SCAN_THRESHOLD_KB = 10_000
"""Segments smaller than this (in KB of vectors) are searched exactly, without the HNSW graph (Qdrant's default)."""


class CollectionParams(BaseModel):
    """The layout of one collection, fixed when it is created."""

    model_config = ConfigDict(frozen=True)

    hnsw_m: int = Field(default=HNSW_M, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=HNSW_EF_CONSTRUCT, ge=4, le=4096)
    quantization: Literal["none", "int8"] = "none"
    quantile: float = Field(default=0.99, gt=0.5, le=1.0)
    on_disk: bool = False
    indexing_threshold_kb: int | None = Field(
        default=None, ge=1, description="Segments above this size get the HNSW graph and quantization (None: Qdrant's default)."
    )


class SearchParams(BaseModel):
    """How a store searches (for every collection; the quantization knobs only act on quantized ones)."""

    model_config = ConfigDict(frozen=True)

    hnsw_ef: int = Field(default=DEFAULT_HNSW_EF, ge=1)
    rescore: bool = True
    oversampling: float = Field(default=2.0, ge=1.0, le=16.0)


def database_params(settings: RetrievalSettings) -> CollectionParams:
    """The image-database collection's layout (``geoagent index build``)."""
    return CollectionParams(
        hnsw_m=settings.qdrant_hnsw_m,
        hnsw_ef_construct=settings.qdrant_hnsw_ef_construct,
        quantization=settings.database_quantization,
        quantile=settings.database_quantile,
        on_disk=settings.database_on_disk,
    )


def default_params(settings: RetrievalSettings) -> CollectionParams:
    """Every other collection (the GPS galleries): float32 in RAM, the settings' HNSW parameters."""
    return CollectionParams(hnsw_m=settings.qdrant_hnsw_m, hnsw_ef_construct=settings.qdrant_hnsw_ef_construct)


def search_params(settings: RetrievalSettings) -> SearchParams:
    return SearchParams(
        hnsw_ef=settings.qdrant_hnsw_ef, rescore=settings.database_rescore, oversampling=settings.database_oversampling
    )
