"""Hostile and odd photos: thin strips, decompression bombs, truncated files, exotic modes, PIL images
keeping their EXIF, no global Pillow flag touched. Each ends in a clear ImageLoadError or RGB pixels."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media import decode_image, inspect_image
from retrieval_service.core.media_settings import DEFAULT_LIMITS, MediaLimits
from retrieval_service.core.photo import Photo
from retrieval_service.evidence.exif import read_exif


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


@pytest.fixture()
def load(tmp_path: Path):
    """Any photo input resolved (checked) and decoded, as the boundary and then the Retriever do."""
    return lambda src, limits=DEFAULT_LIMITS: Photo.resolve(src, tmp_path / "cache", limits).decode(limits)


@pytest.mark.parametrize("size", [(16000, 12), (12, 16000), (4000, 40)])
def test_thin_strips_are_refused_before_decoding(size, tmp_path: Path, load):
    """A 61 KB 16000x12 JPEG once took 10 GB in OCR; now it is refused on its header, in milliseconds."""
    path = _save(Image.new("RGB", size, (90, 90, 90)), tmp_path / "strip.jpg", "JPEG")
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"aspect ratio|too small") as err:
        load(path)
    assert err.value.hint and time.monotonic() - start < 2


def test_a_decompression_bomb_is_a_clear_image_error(tmp_path: Path, load):
    path = _save(Image.new("L", (12000, 9000)), tmp_path / "bomb.png", "PNG")  # 108 Mpx, tiny file
    with pytest.raises(ImageLoadError, match="more than the limit") as err:
        inspect_image(path)
    assert "GEOAGENT_MAX_IMAGE_PIXELS" in err.value.hint
    with pytest.raises(ImageLoadError, match="more than the limit"):
        load(path.read_bytes())
    small = MediaLimits(max_image_pixels=100_000)
    with pytest.raises(ImageLoadError, match="100,000"):
        load(_save(Image.new("RGB", (400, 300)), tmp_path / "a.png", "PNG"), small)
    with pytest.raises(ImageLoadError, match="100,000"):
        decode_image(tmp_path / "a.png", small)  # a dataset file (ingest, precompute) is checked as it is decoded


def test_truncated_jpeg_fails_and_no_global_flag_changes(tmp_path: Path, load):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        load(path)
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        decode_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before


def test_a_huge_jpeg_is_decoded_near_the_size_the_models_need(tmp_path: Path):
    path = _save(Image.new("RGB", (8000, 6000), (30, 60, 90)), tmp_path / "big.jpg", "JPEG", quality=50)
    img = decode_image(path, max_side=1024)
    assert img.mode == "RGB" and 1024 <= max(img.size) < 2048 and img.size[0] * 3 == img.size[1] * 4


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA", "1", "F"])
def test_every_mode_becomes_rgb(mode: str, tmp_path: Path, load):
    if mode == "I;16":
        img = Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16))
    else:
        img = Image.new(mode, (64, 48))
    fmt = "TIFF" if mode in ("CMYK", "F") else "PNG"
    path = _save(img, tmp_path / f"m.{fmt.lower()}", fmt)
    out = load(path)
    assert out.mode == "RGB" and out.size == (64, 48)
    if mode == "I;16":  # 16-bit scaled into 8 bits, not clipped to white
        assert 0 < np.asarray(out).mean() < 255 and np.asarray(out).max() > 200


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP", "TIFF"])
def test_other_formats(fmt: str, tmp_path: Path, load):
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / f"x.{fmt.lower()}"
    if fmt == "GIF":
        frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
    else:
        frames[0].save(path, fmt)
    assert load(path).size == (64, 48)


def test_a_pil_image_keeps_its_exif_gps_and_orientation(exif_dir: Path, tmp_path: Path):
    """A geotagged photo given as a PIL image is answered from EXIF like its path (once it was not)."""
    photo = sorted(exif_dir.glob("*.jp*g"))[0]
    from_path = read_exif(photo)
    assert from_path.gps is not None
    resolved = Photo.resolve(Image.open(photo), tmp_path)
    from_pil = read_exif(resolved.path)
    assert from_pil.gps is not None
    assert (round(from_pil.gps.lat, 5), round(from_pil.gps.lon, 5)) == (round(from_path.gps.lat, 5), round(from_path.gps.lon, 5))


def test_pil_orientation_is_applied_to_the_pixels(tmp_path: Path):
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 0, 0)).save(buf, "JPEG", exif=exif.tobytes())
    resolved = Photo.resolve(Image.open(io.BytesIO(buf.getvalue())), tmp_path)
    assert resolved.decode().size == (48, 64)
    with Image.open(resolved.path) as stored:  # rotated once, not twice
        assert stored.size == (48, 64) and stored.getexif().get(0x0112, 1) == 1


def test_unicode_and_space_names_and_file_objects(tmp_path: Path, load):
    path = _save(Image.new("RGB", (64, 48)), tmp_path / "photo d'été 写真.jpg", "JPEG")
    assert load(path).size == (64, 48) and decode_image(path).size == (64, 48)
    with open(path, "rb") as fh:
        resolved = Photo.resolve(fh, tmp_path / "cache")
    assert resolved.ref.startswith("sha256:") and resolved.decode().size == (64, 48)
