"""One behavioural suite for both vector-store backends (embedded qdrant-edge and qdrant-client)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from retrieval_service.core.errors import StoreError
from retrieval_service.core.types import GeoFilter
from retrieval_service.retrieval.stores import EdgeStore, ServerStore, make_store, point_id
from tests.waiting import GUARD_S

# (name, lat, lon, country)
PLACES = [
    ("paris", 48.8566, 2.3522, "FR"),
    ("lyon", 45.7640, 4.8357, "FR"),
    ("berlin", 52.52, 13.405, "DE"),
    ("nairobi", -1.2921, 36.8219, "KE"),
    ("sydney", -33.8688, 151.2093, "AU"),
    ("tokyo", 35.6762, 139.6503, "JP"),
]


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=["embedded", "server"])
def store(request, tmp_path):
    s = EdgeStore(tmp_path / "qdrant") if request.param == "embedded" else ServerStore(":memory:")
    yield s
    s.close()


@pytest.fixture()
def filled(store):
    vecs = _vectors(len(PLACES))
    ids = [point_id(name) for name, *_ in PLACES]
    payloads = [{"id": name, "location": {"lat": lat, "lon": lon}, "country_code": cc} for name, lat, lon, cc in PLACES]
    store.create_collection("places", 16)
    store.upsert("places", ids, vecs, payloads)
    store.finish_writes("places")
    return store, vecs


def test_create_count_dim(filled):
    store, _ = filled
    assert store.has_collection("places") and not store.has_collection("other")
    assert store.count("places") == len(PLACES)
    assert store.dim("places") == 16


def test_search_ranks_by_cosine(filled):
    store, vecs = filled
    hits = store.search("places", vecs[3], k=3)
    assert hits[0].payload["id"] == "nairobi"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    expected = np.argsort(-(vecs @ vecs[3]))[:3]
    assert [h.payload["id"] for h in hits] == [PLACES[i][0] for i in expected]


def test_circle_box_and_country_filters(filled):
    store, vecs = filled
    circle = GeoFilter(lat=48.85, lon=2.35, radius_km=500)
    assert {h.payload["id"] for h in store.search("places", vecs[4], 10, circle)} == {"paris", "lyon"}
    box = GeoFilter(min_lat=-40, max_lat=0, min_lon=30, max_lon=160)
    assert {h.payload["id"] for h in store.search("places", vecs[0], 10, box)} == {"nairobi", "sydney"}
    country = GeoFilter(country_code="de")
    assert [h.payload["id"] for h in store.search("places", vecs[0], 10, country)] == ["berlin"]


def test_upsert_is_idempotent_and_existing_ids(filled):
    store, vecs = filled
    ids = [point_id("paris"), point_id("nowhere")]
    assert store.existing_ids("places", ids) == {point_id("paris")}
    store.upsert("places", [point_id("paris")], vecs[:1], [{"id": "paris", "location": {"lat": 48.8566, "lon": 2.3522}}])
    assert store.count("places") == len(PLACES)


def test_dimension_mismatch_and_missing_collection(filled):
    store, _ = filled
    with pytest.raises(StoreError, match="16-d vectors, not 32-d"):
        store.create_collection("places", 32)
    with pytest.raises(StoreError, match="does not exist"):
        store.search("missing", np.ones(16), 3)
    with pytest.raises(StoreError, match="vectors"):
        store.upsert("places", [1, 2], np.ones((1, 16)), [{}, {}])


def test_point_ids_are_stable():
    assert point_id(7) == 7
    assert point_id("abc.jpg") == point_id("abc.jpg") != point_id("abd.jpg")


def test_make_store_follows_settings(tmp_path):
    from agent.settings import Settings

    assert isinstance(make_store(Settings(data_dir=tmp_path)), EdgeStore)
    assert isinstance(make_store(Settings(data_dir=tmp_path, qdrant_url=":memory:")), ServerStore)


def test_embedded_store_is_readable_from_another_process_while_open(filled, tmp_path):
    store, vecs = filled
    if not isinstance(store, EdgeStore):
        pytest.skip("cross-process access is an embedded-store concern")
    store.search("places", vecs[0], 1)  # keep the shard open here
    code = (
        "import numpy as np, sys; from retrieval_service.retrieval.stores import EdgeStore; "
        f"s = EdgeStore(sys.argv[1]); print(s.count('places'), s.search('places', np.array({vecs[2].tolist()}), 1)[0].payload['id'])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=GUARD_S)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(PLACES)), "berlin"]


def test_embedded_write_lock_refuses_a_second_writer(tmp_path):
    a, b = EdgeStore(tmp_path / "q"), EdgeStore(tmp_path / "q")
    a.create_collection("c", 4)
    with a.write_lock("c"), pytest.raises(StoreError, match="another process is writing"), b.write_lock("c"):
        pass
    with b.write_lock("c"):  # free again
        pass
    a.close(), b.close()


_WRITER = """
import sys, numpy as np
from retrieval_service.retrieval.stores import EdgeStore
s = EdgeStore(sys.argv[1])
s.create_collection("c", 16)
rng = np.random.default_rng(0)
with s.write_lock("c"):
    for b in range(20):
        ids = list(range(b * 100, b * 100 + 100))
        s.upsert("c", ids, rng.normal(size=(100, 16)).astype(np.float32),
                 [{"id": str(i), "location": {"lat": 0.0, "lon": 0.0}} for i in ids])
        if b % 5 == 4:
            s.finish_writes("c")
print(s.count("c"))
"""


def test_readers_never_break_a_concurrent_writer(tmp_path):
    """`index build` once died with a raw Qdrant flush error (a reader opening the shard removed the
    writer's temporary files); now readers and the writer take turns."""
    import time

    root = tmp_path / "q"
    first = EdgeStore(root)
    first.create_collection("c", 16)
    first.close()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    reads, errors = 0, []
    guard = time.monotonic() + GUARD_S  # read until the writer is done (its exit is the event), however long that takes
    while writer.poll() is None and time.monotonic() < guard:
        reader = EdgeStore(root)  # like `locate` / `index info`: open, read, close
        try:
            reader.count("c")
            reader.search("c", np.ones(16, dtype=np.float32), 3)
            reads += 1
        except StoreError as exc:
            errors.append(exc.message)
        finally:
            reader.close()
    out, err = writer.communicate(timeout=GUARD_S)
    assert writer.returncode == 0, err[-2000:]
    assert out.split() == ["2000"] and not errors and reads > 0
