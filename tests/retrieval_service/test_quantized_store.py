"""The image database's layout: int8 scalar quantization with the float32 originals on disk and
rescoring, HNSW parameters from the settings, the same on the embedded store and on a server; and
the pipelined, resumable bulk upserts of ``index build``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from retrieval_service.core.errors import StoreError
from retrieval_service.retrieval.ingest import parallel_upserts, upsert_vectors
from retrieval_service.retrieval.settings import RetrievalSettings
from retrieval_service.retrieval.stores import (
    CollectionParams,
    EdgeStore,
    SearchParams,
    ServerStore,
    database_params,
    make_store,
    search_params,
)

INT8 = CollectionParams(quantization="int8", on_disk=True, indexing_threshold_kb=1)  # a small set still gets optimised


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in 20 clusters (neighbours close in score: where int8 rounding can swap them)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + rng.normal(size=(n, dim)) * 0.3
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def queries_near(x: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    q = x[:count] + np.random.default_rng(seed).normal(size=(count, x.shape[1])).astype(np.float32) * 0.2
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_int8_collection_with_rescoring_returns_the_exact_top1(tmp_path) -> None:
    x = clustered(2000, 64)
    q = queries_near(x, 200)
    exact = q @ x.T
    writer = EdgeStore(tmp_path / "q")
    writer.create_collection("db", 64, INT8)
    upsert_vectors(writer, "db", range(len(x)), x, lambda a, b: [{}] * (b - a), batch_size=256)
    writer.finish_writes("db")
    writer.close()
    config = (tmp_path / "q" / "db" / "edge_config.json").read_text()
    assert '"Int8"' in config or '"int8"' in config.lower()

    def top1(rescore: bool) -> tuple[float, float]:
        store = EdgeStore(tmp_path / "q", search_params=SearchParams(rescore=rescore, oversampling=2.0))
        hits = [store.search("db", v, 5)[0] for v in q]
        store.close()
        right = float(np.mean([h.id == t for h, t in zip(hits, exact.argmax(1), strict=True)]))
        score_error = max(abs(h.score - exact[i, h.id]) for i, h in enumerate(hits))
        return right, score_error

    rescored, rescored_error = top1(True)
    raw, raw_error = top1(False)
    assert rescored == 1.0 and rescored_error < 1e-5  # the originals decide the order and the scores
    assert raw_error > 1e-3 and raw < 1.0  # the int8 copies are what the index searches (measured 0.925)


def test_float32_collections_keep_the_default_layout(tmp_path) -> None:
    store = EdgeStore(tmp_path / "q")
    store.create_collection("gallery", 8)
    config = (tmp_path / "q" / "gallery" / "edge_config.json").read_text().lower()
    assert "int8" not in config
    store.close()


class RecordingClient:
    """qdrant-client's local mode standing in for a server, recording what geoagent sends."""

    def __init__(self) -> None:
        from qdrant_client import QdrantClient

        self._real = QdrantClient(location=":memory:")
        self.created: dict[str, dict[str, Any]] = {}

    def create_collection(self, name: str, **kwargs: Any) -> Any:
        self.created[name] = kwargs
        return self._real.create_collection(name, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_server_collections_get_the_same_quantization_and_hnsw_settings() -> None:
    from qdrant_client import models

    settings = RetrievalSettings(qdrant_hnsw_m=24, qdrant_hnsw_ef_construct=200, qdrant_hnsw_ef=96, database_oversampling=3.0)
    client = RecordingClient()
    store = ServerStore("http://127.0.0.1:9", client=client, search_params=search_params(settings))
    store.create_collection("db", 16, database_params(settings))
    store.create_collection("plain", 16, CollectionParams(hnsw_m=24, hnsw_ef_construct=200))
    sent = client.created["db"]
    quantization = sent["quantization_config"]
    assert isinstance(quantization, models.ScalarQuantization)
    assert quantization.scalar.type == models.ScalarType.INT8 and quantization.scalar.always_ram is True
    assert quantization.scalar.quantile == settings.database_quantile
    assert sent["vectors_config"].on_disk is True and sent["vectors_config"].distance == models.Distance.COSINE
    assert (sent["hnsw_config"].m, sent["hnsw_config"].ef_construct) == (24, 200)
    assert client.created["plain"]["quantization_config"] is None and client.created["plain"]["vectors_config"].on_disk is False
    params = store._search_params(10)
    assert params.hnsw_ef == 96 and params.quantization.rescore is True and params.quantization.oversampling == 3.0
    x = clustered(50, 16)
    store.upsert("db", list(range(50)), x, [{}] * 50)
    assert store.search("db", x[7], 1)[0].id == 7
    embedded = make_store(settings)  # the embedded store built from the same settings searches the same way
    assert isinstance(embedded, EdgeStore) and embedded.search_params == store.search_params and embedded.hnsw_ef == 96


def test_database_settings_default_to_int8_on_disk_with_rescoring() -> None:
    settings = RetrievalSettings()
    assert database_params(settings) == CollectionParams(quantization="int8", on_disk=True)
    assert search_params(settings) == SearchParams(hnsw_ef=128, rescore=True, oversampling=2.0)
    plain = database_params(RetrievalSettings(database_quantization="none", database_on_disk=False))
    assert plain.quantization == "none" and not plain.on_disk


def test_bulk_upserts_resume_and_report_progress(tmp_path) -> None:
    x = clustered(300, 8)
    store = EdgeStore(tmp_path / "q", build_index=False)
    store.create_collection("db", 8)
    upsert_vectors(store, "db", range(120), x[:120], lambda a, b: [{"i": i} for i in range(a, b)], batch_size=50)
    seen: list[int] = []
    added, skipped = upsert_vectors(
        store, "db", range(300), x, lambda a, b: [{"i": i} for i in range(a, b)], batch_size=50, parallel=3, progress=seen.append
    )
    assert (added, skipped) == (180, 120) and sum(seen) == 300  # the first 120 were there: a resumed load
    assert store.count("db") == 300 and store.search("db", x[250], 1)[0].payload == {"i": 250}
    store.close()


def test_a_failed_background_upsert_is_raised(tmp_path) -> None:
    store = EdgeStore(tmp_path / "q", build_index=False)
    store.create_collection("db", 8)
    with pytest.raises(StoreError, match="expected 2 vectors"), parallel_upserts(store, "db", 2) as submit:
        submit([1, 2], np.zeros((3, 8), np.float32), [{}, {}])
    store.close()
