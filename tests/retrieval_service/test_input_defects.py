"""Smaller input defects, each tested against the behaviour that used to be wrong: filters that matched
nothing, an unknown country code accepted, reserved CSV columns overwriting the payload, the feature
cache failing past its size, Nominatim failures cached for ever, out-of-range EXIF GPS ignored silently."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval_service.core.errors import DatasetError
from retrieval_service.core.types import GeoFilter
from retrieval_service.evidence.geocoding import ReverseGeocoder
from retrieval_service.retrieval.ingest import read_rows
from retrieval_service.retrieval.stores import EdgeStore, ServerStore, point_id

PLACES = [
    ("paris", 48.8566, 2.3522, "FR"),
    ("suva", -18.1248, 178.4501, "FJ"),
    ("apia", -13.8333, -171.7667, "WS"),
    ("honolulu", 21.3069, -157.8583, "US"),
    ("mcmurdo", -77.846, 166.676, "AQ"),
    ("alert", 82.5018, -62.3481, "CA"),
]


@pytest.fixture(params=["embedded", "server"])
def places(request, tmp_path):
    store = EdgeStore(tmp_path / "q") if request.param == "embedded" else ServerStore(":memory:")
    vecs = np.random.default_rng(1).normal(size=(len(PLACES), 8)).astype(np.float32)
    store.create_collection("p", 8)
    store.upsert(
        "p",
        [point_id(n) for n, *_ in PLACES],
        vecs,
        [{"id": n, "location": {"lat": a, "lon": b}, "country_code": c} for n, a, b, c in PLACES],
    )
    store.finish_writes("p")
    yield store, vecs
    store.close()


def _ids(store, vecs, geo_filter) -> set[str]:
    return {h.payload["id"] for h in store.search("p", vecs[0], 10, geo_filter)}


def test_whole_world_and_antimeridian_boxes_match(places):
    """Both boxes once matched nothing at all."""
    store, vecs = places
    assert _ids(store, vecs, GeoFilter(min_lat=-90, max_lat=90, min_lon=-180, max_lon=180)) == {n for n, *_ in PLACES}
    fiji_samoa = GeoFilter(min_lat=-30, max_lat=0, min_lon=170, max_lon=-170)  # across the antimeridian
    assert _ids(store, vecs, fiji_samoa) == {"suva", "apia"}
    assert _ids(store, vecs, GeoFilter(min_lat=-60, max_lat=60, min_lon=-180, max_lon=0)) == {"apia", "honolulu"}


def test_unknown_country_codes_are_refused():
    with pytest.raises(ValueError, match="unknown country code 'XX'"):
        GeoFilter(country_code="xx")
    with pytest.raises(ValueError, match="at most 2 characters"):
        GeoFilter(country_code="France")
    assert GeoFilter(country_code="fj").country_code == "FJ"


def test_the_retrieve_tool_reports_a_bad_country_code():
    from retrieval_service.core.errors import GeoAgentError
    from tools.retrieve import geo_filter

    with pytest.raises(GeoAgentError, match="unknown country code"):
        geo_filter({"country_code": "QQ"})


def test_reserved_csv_columns_are_refused_and_duplicates_counted(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("IMG_ID,LAT,LON,location\na.jpg,1,2,x\n")
    with pytest.raises(DatasetError, match="'location' would take a reserved payload name"):
        read_rows(csv)
    csv.write_text("IMG_ID,LAT,LON,AUTHOR\na.jpg,1,2,me\nb.jpg,3,4,you\na.jpg,5,6,again\n")
    frame, bad = read_rows(csv)
    assert list(frame["id"]) == ["a.jpg", "b.jpg"] and frame.attrs["duplicates"] == 1 and bad == 0
    assert frame["extra:AUTHOR"].tolist() == ["me", "you"]


def test_nominatim_failures_are_not_cached(tiny_settings):
    calls: list[tuple] = []
    outcomes = iter([TimeoutError("down"), type("L", (), {"address": "Suva, Fiji"})()])

    def reverse(point, **kwargs):
        calls.append(point)
        result = next(outcomes)
        if isinstance(result, Exception):
            raise result
        return result

    geocoder = ReverseGeocoder(tiny_settings.model_copy(update={"nominatim": True}))
    geocoder._nominatim = reverse
    assert geocoder.lookup(-18.1248, 178.4501).address is None  # the failure...
    assert geocoder.lookup(-18.1248, 178.4501).address == "Suva, Fiji"  # ...is asked again, and the answer
    assert geocoder.lookup(-18.1248, 178.4501).address == "Suva, Fiji"  # is cached
    assert len(calls) == 2


def test_the_feature_cache_holds_more_inputs_than_its_size(tiny_settings, monkeypatch, tmp_path):
    """More than 64 new images in one call once raised KeyError."""
    from retrieval_service.core.photo import Photo
    from retrieval_service.retrieval import retriever as module
    from retrieval_service.retrieval.retriever import Retriever

    monkeypatch.setattr(module, "CACHE_SIZE", 4)
    r = Retriever(tiny_settings)

    class Encoder:
        calls = 0

        def encode(self, images):
            Encoder.calls += 1
            return np.stack([np.full(8, float(np.asarray(im).mean()), dtype=np.float32) for im in images])

    r.backend.__dict__["encoder"] = Encoder()  # the back end's lazily loaded encoder, replaced
    from io import BytesIO

    from PIL import Image

    def jpeg(v: int) -> bytes:
        buf = BytesIO()
        Image.new("RGB", (32, 32), (v, v, v)).save(buf, "PNG")
        return buf.getvalue()

    images = [Photo.resolve(jpeg(v), tmp_path / "cache") for v in range(10, 250, 20)]  # 12 images, cache of 4
    feats = r._raw_features(images + images[:2])
    assert feats.shape == (14, 8) and np.allclose(feats[12], feats[0]) and Encoder.calls == 1
    pixels = [im.decode() for im in images]  # decoded images too (keyed by their pixels)
    feats = r._raw_features(pixels + pixels[:2])
    assert feats.shape == (14, 8) and np.allclose(feats[13], feats[1]) and Encoder.calls == 2


def test_exif_gps_out_of_range_is_reported_not_silently_dropped(tmp_path):
    from PIL import Image

    from retrieval_service.evidence.exif import read_exif

    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (123.0, 0.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)}
    path = tmp_path / "gps.jpg"
    Image.new("RGB", (64, 48)).save(path, "JPEG", exif=exif.tobytes())
    info = read_exif(path)
    assert info.gps is None and "out of range" in info.gps_problem and "123" in info.gps_problem
