"""Real GeoCLIP weights: the location encoder, the persisted 100K gallery, and the width check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from geopy.distance import great_circle

from retrieval_service.core.errors import ModelMismatchError
from retrieval_service.core.types import GeoFilter
from retrieval_service.retrieval.gallery import ensure_gallery, gallery_name, gallery_ready
from retrieval_service.retrieval.geoclip_heads import GeoClipHeads, equal_earth_projection, gallery_coordinates
from retrieval_service.retrieval.stores import EdgeStore


@pytest.fixture(scope="module")
def heads() -> GeoClipHeads:
    return GeoClipHeads(torch.device("cpu"))


CITIES = {"paris": (48.8566, 2.3522, "FR"), "nairobi": (-1.2921, 36.8219, "KE"), "sydney": (-33.8688, 151.2093, "AU")}


def test_gallery_coordinates_are_the_100k_geoclip_points():
    coords = gallery_coordinates()
    assert coords.shape == (100_000, 2)
    assert np.abs(coords[:, 0]).max() <= 90 and np.abs(coords[:, 1]).max() <= 180


def test_equal_earth_projection_is_geoclips():
    xy = equal_earth_projection(torch.tensor([[0.0, 0.0], [0.0, 180.0], [90.0, 0.0]]))
    assert torch.allclose(xy[0], torch.zeros(2))
    assert xy[1, 0] > 0 and xy[1, 1] == 0 and xy[2, 0] == 0 and xy[2, 1] > 0


def test_location_embeddings_are_normalised_and_local(heads):
    emb = heads.encode_locations(np.array([[48.8566, 2.3522], [48.87, 2.30], [-33.8688, 151.2093]]))
    assert emb.shape == (3, 512)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


@pytest.mark.parametrize("city", sorted(CITIES))
def test_gallery_search_finds_a_point_near_the_city(city, heads, gallery_settings):
    lat, lon, cc = CITIES[city]
    store = EdgeStore(gallery_settings.embedded_qdrant_path)
    hits = store.search(gallery_name(gallery_settings), heads.encode_locations(np.array([[lat, lon]]))[0], 5)
    top = hits[0].payload
    assert great_circle((lat, lon), (top["location"]["lat"], top["location"]["lon"])).km < 100
    assert top["country_code"] == cc
    store.close()


def test_gallery_geo_filter_and_country_payload(heads, gallery_settings):
    store = EdgeStore(gallery_settings.embedded_qdrant_path)
    q = heads.encode_locations(np.array([[48.8566, 2.3522]]))[0]  # Paris, but restricted to Japan
    hits = store.search(gallery_name(gallery_settings), q, 10, GeoFilter(country_code="JP"))
    assert len(hits) == 10 and {h.payload["country_code"] for h in hits} == {"JP"}
    box = GeoFilter(min_lat=40, max_lat=45, min_lon=-80, max_lon=-70)
    for h in store.search(gallery_name(gallery_settings), q, 10, box):
        assert 40 <= h.payload["location"]["lat"] <= 45 and -80 <= h.payload["location"]["lon"] <= -70
    store.close()


def test_second_start_does_not_reencode(gallery_settings, monkeypatch):
    store = EdgeStore(gallery_settings.embedded_qdrant_path)
    assert gallery_ready(gallery_settings, store)

    class NoEncoding:
        def encode_locations(self, coords):
            raise AssertionError("the gallery was re-encoded")

    assert ensure_gallery(gallery_settings, store, NoEncoding()) == 100_000  # type: ignore[arg-type]
    store.close()


def test_an_abandoned_build_is_completed_not_deleted(tmp_path, monkeypatch, heads):
    """A gallery left half-built by a process that died (no completion record, no progress) is
    completed by the next start, which never deletes a collection it did not create (here with a
    300-point gallery to keep it fast)."""
    from agent.settings import Settings
    from retrieval_service.retrieval import gallery

    small = gallery_coordinates()[:300]
    monkeypatch.setattr(gallery, "gallery_coordinates", lambda: small)
    settings = Settings(data_dir=tmp_path, gallery_build_stall_s=0.2)
    store = EdgeStore(settings.embedded_qdrant_path, build_index=False)
    name = gallery_name(settings)
    assert store.create_collection(name, 512)  # the dead process's leftover: 10 of 300 points
    store.upsert(name, list(range(10)), heads.encode_locations(small[:10]), [{"location": {"lat": 0, "lon": 0}}] * 10)
    assert not gallery_ready(settings, store)
    deleted = []
    monkeypatch.setattr(store, "delete_collection", deleted.append)
    assert ensure_gallery(settings, store, heads) == 300
    assert gallery_ready(settings, store) and deleted == []
    calls = []
    monkeypatch.setattr(heads, "encode_locations", lambda c: calls.append(1))
    assert ensure_gallery(settings, store, heads) == 300 and not calls
    store.close()


def test_backbone_width_mismatch_is_a_clear_error(heads):
    with pytest.raises(ModelMismatchError, match="768-d") as err:
        heads.embed_clip_features(np.zeros((2, 512), dtype=np.float32))
    assert "ViT-L-14" in err.value.hint


def test_encoding_the_gallery_shows_progress(monkeypatch):
    """The first run encodes GeoCLIP's 100K gallery (minutes on a CPU): a progress bar counts the
    points, chunk by chunk, instead of one log line and silence."""
    import numpy as np
    import tqdm

    from retrieval_service.retrieval import gallery

    bars: list[dict] = []

    class Bar:
        def __init__(self, **kw):
            self.kw, self.done = kw, 0
            bars.append(self.__dict__)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.done += n

    class Heads:
        def encode_locations(self, coords):
            return np.zeros((len(coords), gallery.GPS_DIM), np.float32)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    coords = np.zeros((10_000, 2), np.float32)
    vectors = gallery.encode_with_progress(Heads(), coords, "encoding GeoCLIP's GPS gallery (once)")
    assert vectors.shape == (10_000, gallery.GPS_DIM)
    [bar] = bars
    assert bar["done"] == 10_000 and bar["kw"]["total"] == 10_000 and "GPS gallery" in bar["kw"]["desc"]
