"""The core: one great-circle distance, the spherical mean, country lookup, media resolution."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.geo import (
    EARTH_RADIUS_KM,
    country_code,
    country_codes,
    country_name,
    distance_km,
    distances_km,
    geodesic_km,
    spherical_mean,
)
from retrieval_service.core.photo import Photo

PARIS, LONDON = (48.8566, 2.3522), (51.5074, -0.1278)


def test_one_distance_everywhere():
    d = distance_km(*PARIS, *LONDON)
    assert d == pytest.approx(343.5, abs=0.5)
    assert distances_km(*PARIS, [LONDON[0], PARIS[0]], [LONDON[1], PARIS[1]]) == pytest.approx([d, 0.0])
    # across the antimeridian and over the pole
    assert distance_km(0, 179.5, 0, -179.5) == pytest.approx(np.pi * EARTH_RADIUS_KM / 180, rel=1e-9)
    assert distance_km(89, 0, 89, 180) == pytest.approx(2 * np.pi * EARTH_RADIUS_KM / 180, rel=1e-9)
    assert distance_km(0, 0, 0, 180) == pytest.approx(np.pi * EARTH_RADIUS_KM)
    # the ellipsoid differs from the sphere by well under 1%
    assert geodesic_km(*PARIS, *LONDON) == pytest.approx(d, rel=5e-3)


def test_spherical_mean_across_the_antimeridian_and_for_antipodes():
    lat, lon = spherical_mean([10, 10], [179, -179])
    assert lat == pytest.approx(10, abs=0.01) and abs(lon) == pytest.approx(180, abs=1e-6)
    assert spherical_mean([0, 0], [0, 180], [1, 2]) == (0.0, 180.0)  # they cancel: the heavier point


def test_country_lookup_and_names():
    assert country_codes([PARIS, LONDON, (35.68, 139.69)]) == ["FR", "GB", "JP"]
    assert country_code(-33.87, 151.21) == "AU" and country_codes([]) == []
    assert (country_name("fr"), country_name("XK"), country_name("??")) == ("France", "Kosovo", "??")


def test_photo_resolve_gives_a_reference_a_file_and_a_content_key(tmp_path: Path):
    photo = tmp_path / "a photo.jpg"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(photo)
    r = Photo.resolve(photo, tmp_path / "cache")
    assert r.ref == r.path == str(photo) and not (tmp_path / "cache").exists()  # a local file is used where it is
    data = photo.read_bytes()
    rb = Photo.resolve(data, tmp_path / "cache")
    assert rb.ref.startswith("sha256:") and Path(rb.path).read_bytes() == data and rb.path.endswith(".jpeg")
    assert Photo.resolve(data, tmp_path / "cache") == rb  # content-addressed: same bytes, same file
    assert rb.key == r.key == rb.ref and Photo.resolve(rb, tmp_path / "cache") is rb  # same content, same key
    assert Photo.resolve(rb.ref, tmp_path / "cache") == rb  # a sha256: reference finds the stored file
    rp = Photo.resolve(Image.open(io.BytesIO(data)), tmp_path / "cache")
    assert rp.ref.startswith("sha256:") and Image.open(rp.path).size == (64, 48)
    assert (rp.meta.width, rp.meta.height) == (64, 48) and rp.decode().size == (64, 48)


@pytest.mark.parametrize(
    "bad, problem",
    [
        (b"", "empty"),
        (b"not an image", "not an image"),
        ("missing.jpg", "not found"),
        (".", "is a directory, not an image file"),
        ({"image": "x"}, "dict"),
        (42, "unsupported"),
    ],
)
def test_photo_resolve_refuses_what_cannot_be_read(bad, problem, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageLoadError, match=problem) as err:
        Photo.resolve(bad, tmp_path / "cache")
    assert err.value.hint
