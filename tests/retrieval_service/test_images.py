"""Photo.resolve / photo.decode: every input form, and every way an image can be bad."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.photo import Photo


def _jpeg(size=(64, 48), color=(200, 30, 30), exif_orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", exif=exif.tobytes())
    else:
        img.save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture()
def load(tmp_path):
    """Any photo input resolved and decoded, as the boundary and then the Retriever do."""
    return lambda src: Photo.resolve(src, tmp_path / "cache").decode()


def test_path_bytes_and_pil_give_the_same_rgb_image(tmp_path, load):
    data = _jpeg()
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    from_path, from_bytes = load(path), load(data)
    from_pil = load(Image.open(io.BytesIO(data)).convert("L"))
    assert from_path.mode == from_bytes.mode == from_pil.mode == "RGB"
    assert from_path.size == from_bytes.size == (64, 48)
    assert from_path.tobytes() == from_bytes.tobytes()


def test_exif_orientation_is_applied(load):
    img = load(_jpeg(size=(64, 48), exif_orientation=6))  # rotate 90° -> portrait
    assert img.size == (48, 64)


def test_missing_file(tmp_path, load):
    with pytest.raises(ImageLoadError, match="not found") as err:
        load(tmp_path / "nope.jpg")
    assert err.value.hint


def test_directory_is_not_an_image(tmp_path, load):
    with pytest.raises(ImageLoadError, match="is a directory, not an image file"):
        load(tmp_path)


def test_non_image_file(tmp_path, load):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a JPEG")
    with pytest.raises(ImageLoadError, match="not an image"):
        load(path)


def test_empty_file_and_empty_bytes(tmp_path, load):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load(path)
    with pytest.raises(ImageLoadError, match="empty"):
        load(b"")


def test_truncated_jpeg_fails_instead_of_returning_half_an_image(tmp_path, load):
    data = _jpeg(size=(256, 256))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load(path)


def test_unsupported_type(load):
    with pytest.raises(ImageLoadError, match="unsupported"):
        load(12345)


def test_photo_ref_and_key(tmp_path):
    """``ref``: the path or URL as given, else the content hash; ``key``: the content hash, always."""
    data = _jpeg()
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    cache = tmp_path / "cache"
    from_path, from_bytes = Photo.resolve(str(path), cache), Photo.resolve(data, cache)
    assert from_path.ref == str(path) and from_bytes.ref.startswith("sha256:")
    assert from_bytes.ref == Photo.resolve(bytearray(data), cache).ref == from_path.key == from_bytes.key
    assert from_bytes.key != Photo.resolve(_jpeg(color=(0, 0, 255)), cache).key
    assert Photo.resolve(Image.open(io.BytesIO(data)), cache).ref.startswith("sha256:")
