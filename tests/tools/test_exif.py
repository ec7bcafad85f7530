"""EXIF reading on real camera files."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.evidence.exif import read_exif

EXPECTED = {
    "FujiFilm_FinePixS1Pro_1_.jpg": (54.9897, -1.9142),
    "FujiFilm_FinePixS2Pro.jpg": (48.8578, 2.2970),
    "HTC_Desire.jpg": (45.5007, 9.1103),
    "Sony_DSC_HX5V_2_.jpg": (51.7786, 8.3656),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gps_of_real_photos(exif_dir: Path, name: str):
    info = read_exif(exif_dir / name)
    assert info.gps is not None
    lat, lon = EXPECTED[name]
    assert info.gps.lat == pytest.approx(lat, abs=1e-4)
    assert info.gps.lon == pytest.approx(lon, abs=1e-4)
    assert info.camera


def test_altitude_and_time(exif_dir: Path):
    info = read_exif((exif_dir / "HTC_Desire.jpg").read_bytes())
    assert info.gps is not None and info.gps.altitude_m == pytest.approx(217.0)
    assert info.datetime == "2011:05:06 09:59:48"
    assert info.camera == "HTC HTC Desire"


def test_dev_photo_has_no_gps(dev_photo: Path):
    assert read_exif(dev_photo).gps is None


def test_missing_and_not_an_image(tmp_path: Path):
    with pytest.raises(ImageLoadError, match="not found"):
        read_exif(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageLoadError, match="is a text file, not an image"):
        read_exif(bad)
