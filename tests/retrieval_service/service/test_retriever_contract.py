"""One behavioural suite for the ``Retriever``'s interface, run against the in-process Retriever
and the HTTP client (``GEOAGENT_RETRIEVAL_URL``): same results, same error classes. Both take a
resolved ``Photo`` (or decoded pixels); the service resolves each upload into one Photo itself."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from PIL import Image

from retrieval_service.core.errors import GeoAgentError, ImageLoadError
from retrieval_service.core.types import GeoFilter


@pytest.fixture(scope="module")
def photo(dev_images, resolve):
    return resolve(sorted(dev_images.iterdir())[0])


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


def test_the_client_answers_exactly_what_the_retriever_answers(inprocess, remote, photo, resolve):
    circle = GeoFilter(lat=48.85, lon=2.35, radius_km=800)
    assert remote.search(photo, k_gallery=10, geo_filter=circle, dissimilar=2) == inprocess.search(
        photo, k_gallery=10, geo_filter=circle, dissimilar=2
    )
    as_bytes = resolve(photo.read_bytes())  # the same content given as bytes: the same answers
    assert remote.search(as_bytes, k_gallery=3) == inprocess.search(as_bytes, k_gallery=3) == inprocess.search(photo, k_gallery=3)
    pil = Image.open(photo.path)
    assert np.allclose(remote.gps_embed_images([pil]), inprocess.gps_embed_images([pil]), atol=1e-5)


def test_the_tools_retrieve_over_http_when_the_url_is_set(module_settings, served, photo):
    from retrieval_service.service.client import RetrievalClient
    from tools import make_tools, photo_runtime
    from tools.services import Services

    local = {t.name: t for t in make_tools(Services(module_settings))}
    services = Services(module_settings.model_copy(update={"retrieval_url": served}))
    remote = {t.name: t for t in make_tools(services)}
    assert isinstance(services.retriever, RetrievalClient)
    args = {"runtime": photo_runtime(photo), "k": 5, "country_code": "JP"}
    assert remote["retrieve"].invoke(args) == local["retrieve"].invoke(args)
    points = {"runtime": photo_runtime(photo), "candidates": [{"lat": 35.7, "lon": 139.7}, {"lat": 48.85, "lon": 2.35}]}
    assert remote["verify_locations"].invoke(points) == local["verify_locations"].invoke(points)
    services.retriever.close()


def test_embeddings(any_retriever, photo, resolve):
    clip = any_retriever.embed_images([photo, resolve(photo.read_bytes())])
    assert clip.shape == (2, 768) and np.allclose(np.linalg.norm(clip, axis=1), 1, atol=1e-5)
    assert np.allclose(clip[0], clip[1], atol=1e-5)
    gps = any_retriever.gps_embed_images([photo])
    assert gps.shape == (1, 512)
    locs = any_retriever.encode_locations([(48.85, 2.35), (-33.87, 151.21)])
    assert locs.shape == (2, 512) and np.allclose(np.linalg.norm(locs, axis=1), 1, atol=1e-5)
    assert float(gps[0] @ locs[0]) == pytest.approx(any_retriever.verify(photo, [(48.85, 2.35)])[0], abs=1e-4)


def test_bad_inputs_raise_the_same_error_classes(any_retriever, photo, tmp_path):
    for unresolved in (tmp_path / "missing.jpg", photo.path, photo.read_bytes()):  # photo inputs are resolved before
        with pytest.raises(TypeError, match=r"Photo\.resolve"):
            any_retriever.search(unresolved)
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


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not an image at all", "the uploaded file 'x.jpg' is a text file, not an image"),
        ("truncated", "the uploaded file 'x.jpg' is damaged or truncated"),
        (b"", "empty"),
    ],
)
def test_bad_uploads_are_refused_by_the_service_with_the_upload_named(served, remote, photo, data, problem):
    """The service resolves an upload into one checked Photo: a bad one is a 422 ``image_invalid``
    naming the upload (never the server's stored file), and comes back as ImageLoadError."""
    data = photo.read_bytes()[:2000] if data == "truncated" else data
    resp = httpx.post(f"{served}/v1/search", files={"image": ("x.jpg", data, "image/jpeg")}, timeout=60)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "image_invalid" and problem in error["message"] and error["fix"]
    assert "/images/" not in error["message"]
    with pytest.raises(ImageLoadError, match="truncated"):  # the client raises the server's error class
        remote._request("POST", "/v1/search", files={"image": ("x.jpg", photo.read_bytes()[:2000], "image/jpeg")})


def test_the_service_resolves_each_upload_once(inprocess, served, photo, monkeypatch):
    """One Photo per request, stored under the service's cache: the retriever gets that Photo
    (and decodes it) instead of checking the same bytes again."""
    from retrieval_service.core import media
    from retrieval_service.core.photo import Photo

    resolved, decoded, given = [], [], []
    original_resolve, original_decode, original_search = Photo.resolve, media.decode_bytes, inprocess.search
    monkeypatch.setattr(Photo, "resolve", classmethod(lambda cls, *a, **k: resolved.append(a[0]) or original_resolve(*a, **k)))
    monkeypatch.setattr(media, "decode_bytes", lambda *a, **k: decoded.append(1) or original_decode(*a, **k))
    monkeypatch.setattr(inprocess, "search", lambda image, **k: given.append(image) or original_search(image, **k))
    resp = httpx.post(
        f"{served}/v1/search",
        files={"image": ("p.jpg", photo.read_bytes(), "image/jpeg")},
        data={"k_gallery": "2", "k_database": "0"},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    assert resolved == [photo.read_bytes()] and decoded == []
    [image] = given
    assert isinstance(image, Photo) and image.key == photo.key and image.ref == photo.key and image.path != photo.path
