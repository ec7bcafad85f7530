"""One behavioural suite for the ``Retriever``'s interface, run against the in-process Retriever
and the HTTP client (``GEOAGENT_RETRIEVAL_URL``): same results, same error classes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retrieval_service.core.errors import GeoAgentError, ImageLoadError
from retrieval_service.core.types import GeoFilter


@pytest.fixture(scope="module")
def photo(dev_images):
    return sorted(dev_images.iterdir())[0]


def test_search_shapes_scores_and_filter(any_retriever, photo):
    res = any_retriever.search(photo, k_gallery=7, k_database=5)
    assert len(res.gallery) == 7 and res.database == [] and res.dissimilar == []
    assert all(c.source == "gallery" and "country_code" in c.payload for c in res.gallery)
    scores = [c.score for c in res.gallery]
    assert scores == sorted(scores, reverse=True)
    coords = [(c.lat, c.lon) for c in res.gallery[:3]]
    assert any_retriever.verify(photo, coords) == pytest.approx(scores[:3], abs=1e-3)
    br = any_retriever.search(photo, k_gallery=5, geo_filter=GeoFilter(country_code="br"), dissimilar=3)
    assert {c.payload["country_code"] for c in br.gallery} == {"BR"} and br.geo_filter.country_code == "BR"
    assert len(br.dissimilar) == 3 and max(c.score for c in br.dissimilar) < min(c.score for c in br.gallery)


def test_the_client_answers_exactly_what_the_retriever_answers(inprocess, remote, photo):
    circle = GeoFilter(lat=48.85, lon=2.35, radius_km=800)
    assert remote.search(photo, k_gallery=10, geo_filter=circle, dissimilar=2) == inprocess.search(
        photo, k_gallery=10, geo_filter=circle, dissimilar=2)
    assert remote.search(photo.read_bytes(), k_gallery=3) == inprocess.search(photo.read_bytes(), k_gallery=3)
    pil = Image.open(photo)
    assert np.allclose(remote.gps_embed_images([pil]), inprocess.gps_embed_images([pil]), atol=1e-5)


def test_the_tools_retrieve_over_http_when_the_url_is_set(module_settings, served, photo):
    from tools import make_tools
    from tools.services import Services
    from retrieval_service.service.client import RetrievalClient

    local = {t.name: t for t in make_tools(Services(module_settings))}
    services = Services(module_settings.model_copy(update={"retrieval_url": served}))
    remote = {t.name: t for t in make_tools(services)}
    assert isinstance(services.retriever, RetrievalClient)
    args = {"image": str(photo), "k": 5, "country_code": "JP"}
    assert remote["retrieve"].invoke(args) == local["retrieve"].invoke(args)
    points = {"image": str(photo), "candidates": [{"lat": 35.7, "lon": 139.7}, {"lat": 48.85, "lon": 2.35}]}
    assert remote["verify_locations"].invoke(points) == local["verify_locations"].invoke(points)
    assert "not found" in remote["retrieve"].invoke({"image": "/nonexistent.jpg"})["error"]
    services.retriever.close()


def test_embeddings(any_retriever, photo):
    clip = any_retriever.embed_images([photo, photo.read_bytes()])
    assert clip.shape == (2, 768) and np.allclose(np.linalg.norm(clip, axis=1), 1, atol=1e-5)
    assert np.allclose(clip[0], clip[1], atol=1e-5)
    gps = any_retriever.gps_embed_images([photo])
    assert gps.shape == (1, 512)
    locs = any_retriever.encode_locations([(48.85, 2.35), (-33.87, 151.21)])
    assert locs.shape == (2, 512) and np.allclose(np.linalg.norm(locs, axis=1), 1, atol=1e-5)
    assert float(gps[0] @ locs[0]) == pytest.approx(any_retriever.verify(photo, [(48.85, 2.35)])[0], abs=1e-4)


def test_bad_inputs_raise_the_same_error_classes(any_retriever, photo, tmp_path):
    with pytest.raises(ImageLoadError):
        any_retriever.search(tmp_path / "missing.jpg")
    truncated = photo.read_bytes()[:2000]
    with pytest.raises(ImageLoadError, match="truncated"):
        any_retriever.search(truncated)
    with pytest.raises(ImageLoadError):
        any_retriever.search(b"not an image at all")
    with pytest.raises(GeoAgentError, match="k_gallery"):
        any_retriever.search(photo, k_gallery=-1)
    with pytest.raises(GeoAgentError, match="out of range"):
        any_retriever.encode_locations([(91.0, 0.0)])
    assert any_retriever.verify(photo, []) == []


def test_info_names_the_gallery(any_retriever):
    info = any_retriever.info()
    assert info["gallery_ready"] is True
    gallery = [v for k, v in info["collections"].items() if k.startswith("geoclip_gallery-")]
    assert gallery == [{"points": 100_000, "dim": 512}]
    assert any_retriever.has_database() is False
