"""Retriever: gallery + database search, geo filters, dissimilar neighbours, caching, verify; it takes
resolved Photos (or decoded PIL images) and never resolves a photo itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.settings import load_settings
from retrieval_service.core import media
from retrieval_service.core.errors import ImageLoadError, ModelMismatchError, StoreError
from retrieval_service.core.photo import Photo
from retrieval_service.core.types import GeoFilter
from retrieval_service.retrieval.ingest import ingest_csv
from retrieval_service.retrieval.retriever import Retriever


@pytest.fixture()
def photo(dev_images, tmp_path) -> Photo:
    return Photo.resolve(sorted(dev_images.iterdir())[0], tmp_path / "cache")


@pytest.fixture()
def retriever(gallery_settings):
    r = Retriever.from_settings(gallery_settings)
    yield r
    r.close()


def test_from_settings_is_lazy(tiny_settings):
    r = Retriever.from_settings(tiny_settings)
    assert "encoder" not in r.backend.__dict__ and "heads" not in r.backend.__dict__ and r._store is None


def test_k_defaults_to_the_top_k_setting(retriever, photo):
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(Retriever.search).parameters.items() if name.startswith("k_")}
    assert defaults == {"k_gallery": None, "k_database": None}
    assert len(retriever.search(photo).gallery) == retriever.settings.top_k


def test_gallery_search_shapes_and_payload(retriever, photo):
    res = retriever.search(photo, k_gallery=7, k_database=5)
    assert len(res.gallery) == 7 and res.database == [] and res.dissimilar == []
    assert all(c.source == "gallery" and "country_code" in c.payload for c in res.gallery)
    scores = [c.score for c in res.gallery]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    # scores are the cosine similarity of the image head and the location encoder
    coords = [(c.lat, c.lon) for c in res.gallery[:3]]
    assert retriever.verify(photo, coords) == pytest.approx(scores[:3], abs=1e-3)


def test_geo_filter_and_dissimilar_from_gallery(retriever, photo):
    res = retriever.search(photo, k_gallery=5, geo_filter=GeoFilter(country_code="br"), dissimilar=3)
    assert {c.payload["country_code"] for c in res.gallery} == {"BR"}
    assert res.geo_filter.country_code == "BR"
    assert len(res.dissimilar) == 3 and all(c.payload["country_code"] == "BR" for c in res.dissimilar)
    assert max(c.score for c in res.dissimilar) < min(c.score for c in res.gallery)


def test_exact_gallery_search_gives_geoclip_probabilities(retriever, photo):
    """The default exact search scores all 100K points: probabilities are GeoCLIP's softmax with its
    temperature (their log-ratios are scale * cosine differences), zoom results are marked, and the
    exact top-k contains what the Qdrant collection finds."""
    res = retriever.search(photo, k_gallery=10)
    probs = np.array([c.probability for c in res.gallery])
    scores = np.array([c.score for c in res.gallery])
    assert np.all(np.diff(probs) <= 1e-12) and 0 < probs.sum() < 1
    scale = retriever.heads.scale
    assert 30 < scale < 50
    assert np.log(probs[0] / probs[1:]) == pytest.approx(scale * (scores[0] - scores[1:]), abs=1e-4)
    assert res.gallery_rest and probs.sum() + sum(c.probability for c in res.gallery_rest) <= 1 + 1e-6
    assert not any(c.filtered for c in res.gallery)
    zoom = retriever.search(
        photo, k_gallery=3, geo_filter=GeoFilter(lat=res.gallery[0].lat, lon=res.gallery[0].lon, radius_km=50)
    )
    assert zoom.gallery and all(c.filtered for c in zoom.gallery) and zoom.gallery_rest == []
    assert not any("filtered" in (c.payload or {}) for c in zoom.gallery)  # the typed field, not a payload key
    gps = retriever.gps_embed_images([photo])[0]
    hnsw = retriever.store.search(retriever.gallery_collection, gps, 10)
    # (the fixture's collection scans exactly; its float arithmetic may swap near-ties at the edge)
    assert min(h.score for h in hnsw) >= scores[-1] - 1e-4 and max(h.score for h in hnsw) == pytest.approx(scores[0], abs=1e-4)


def test_embeddings_are_cached_per_image(retriever, photo, monkeypatch, tmp_path):
    calls = []
    original = retriever.encoder.encode
    monkeypatch.setattr(retriever.encoder, "encode", lambda imgs: calls.append(len(imgs)) or original(imgs))
    e1 = retriever.embed_images([photo])
    retriever.search(photo, k_gallery=3)
    retriever.verify(photo, [(0.0, 0.0)])
    assert calls == [1]
    assert np.allclose(np.linalg.norm(e1, axis=1), 1, atol=1e-5)
    same = Photo.resolve(photo.read_bytes(), tmp_path / "cache")  # the same content, given as bytes
    assert same.path != photo.path and same.key == photo.key
    assert np.allclose(np.linalg.norm(retriever.gps_embed_images([photo, same]), axis=1), 1, atol=1e-5)
    assert calls == [1]  # keyed by content: the same photo however it was given
    pixels = Image.open(photo.path)
    retriever.gps_embed_images([pixels, pixels.copy()])
    assert calls == [1, 1]  # a decoded image is keyed by its pixels: a new key, encoded once


def test_the_retriever_never_resolves_a_photo(retriever, photo, monkeypatch):
    """Search, zoom, dissimilar, verify and both embeddings on one Photo: no resolution, no second
    check of the file, one decode (the feature cache)."""
    resolved, decoded, checked = [], [], []
    original_resolve, original_decode, original_inspect = Photo.resolve, Photo.decode, media.inspect_image
    monkeypatch.setattr(Photo, "resolve", classmethod(lambda cls, *a, **k: resolved.append(a) or original_resolve(*a, **k)))
    monkeypatch.setattr(Photo, "decode", lambda self, *a, **k: decoded.append(self.key) or original_decode(self, *a, **k))
    monkeypatch.setattr(media, "inspect_image", lambda *a, **k: checked.append(a) or original_inspect(*a, **k))
    res = retriever.search(photo, k_gallery=5, dissimilar=2)
    retriever.search(photo, k_gallery=3, geo_filter=GeoFilter(country_code="FR"))
    assert retriever.verify(photo, [(c.lat, c.lon) for c in res.gallery[:2]]) == pytest.approx(
        [c.score for c in res.gallery[:2]], abs=1e-3
    )
    retriever.embed_images([photo])
    retriever.gps_embed_images([photo, photo])
    assert resolved == [] and checked == [] and decoded == [photo.key]


def test_bad_image_and_bad_arguments(retriever, photo, tmp_path):
    with pytest.raises(ImageLoadError):  # a bad photo input fails where it is resolved, before any retrieval
        Photo.resolve(tmp_path / "missing.jpg", tmp_path / "cache")
    for unresolved in (tmp_path / "missing.jpg", str(photo.path), photo.read_bytes()):
        with pytest.raises(TypeError, match=r"Photo\.resolve"):
            retriever.search(unresolved)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"Photo\.resolve"):
            retriever.verify(unresolved, [])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="k_gallery"):
        retriever.search(photo, k_gallery=-1)
    assert retriever.verify(photo, []) == []


def test_database_search_after_ingest(retriever, dev_images, dev_labels, tmp_path):
    rows = dev_labels.read_text().splitlines()[:9]
    csv = tmp_path / "some.csv"
    csv.write_text("\n".join(rows) + "\n")
    report = ingest_csv(retriever, csv, dev_images, batch_size=4)
    assert report.added == 8 and retriever.has_database()
    first_id, _, lat, lon = rows[1].split(",")
    query = Photo.resolve(dev_images / first_id, tmp_path / "cache")
    res = retriever.search(query, k_gallery=2, k_database=3, dissimilar=2)
    top = res.database[0]
    assert top.source == "database" and top.payload["id"] == first_id and top.score == pytest.approx(1, abs=1e-4)
    assert (top.lat, top.lon) == pytest.approx((float(lat), float(lon)), abs=1e-5)
    assert len(res.dissimilar) == 2 and res.dissimilar[0].payload["id"] != first_id
    assert not any(c.filtered for c in res.database + res.dissimilar)
    near = retriever.search(query, k_database=8, geo_filter=GeoFilter(lat=float(lat), lon=float(lon), radius_km=1))
    assert [c.payload["id"] for c in near.database] == [first_id] and near.database[0].filtered
    assert retriever.info()["collections"][retriever.settings.database_collection]["points"] == 8


def test_non_768_backbone_cannot_use_the_geoclip_head(gallery_env, tmp_path, monkeypatch, photo):
    cfg = json.loads(Path(gallery_env["GEOAGENT_IMAGE_MODEL"]).read_text())
    cfg["embed_dim"] = 512
    path = tmp_path / "geoagent-tiny-512.json"
    path.write_text(json.dumps(cfg))
    monkeypatch.setenv("GEOAGENT_IMAGE_MODEL", str(path))
    r = Retriever.from_settings(load_settings())
    assert r.embed_images([photo]).shape == (1, 512)
    with pytest.raises(ModelMismatchError, match="512-d"):
        r.search(photo)
    r.close()


def test_the_geoclip_gallery_searched_in_the_store(gallery_env, monkeypatch, photo):
    """``GEOAGENT_GALLERY_SEARCH=hnsw``: the GeoCLIP back end offers no exact index, the gallery
    collection is searched instead and finds what exact search finds (without probabilities)."""
    from retrieval_service.retrieval.backends import make_backend

    monkeypatch.setenv("GEOAGENT_GALLERY_SEARCH", "hnsw")
    r = Retriever.from_settings(load_settings())
    try:
        assert r.backend.exact_gallery() is None and r.info()["gallery_search"] == "hnsw" and r.info()["gallery_ready"]
        found = r.search(photo, k_gallery=5)
        assert [c.probability for c in found.gallery] == [None] * 5 and found.gallery_rest == []
        exact = make_backend(load_settings(gallery_search="exact")).exact_gallery()
        want, _ = exact.search(r.gps_embed_images([photo])[0], 5)
        assert [c.score for c in found.gallery] == pytest.approx(want.scores.tolist(), abs=1e-4)
        zoom = r.search(photo, k_gallery=3, geo_filter=GeoFilter(country_code="BR"), dissimilar=2)
        assert all(c.filtered and c.payload["country_code"] == "BR" for c in zoom.gallery)
        assert len(zoom.dissimilar) == 2 and not any(c.filtered for c in zoom.dissimilar)
    finally:
        r.close()
