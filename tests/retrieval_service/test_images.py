"""load_image / image_ref: every input form, and every way an image can be bad."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media import image_ref, load_image


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


def test_path_bytes_and_pil_give_the_same_rgb_image(tmp_path):
    data = _jpeg()
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    from_path, from_bytes = load_image(path), load_image(data)
    from_pil = load_image(Image.open(io.BytesIO(data)).convert("L"))
    assert from_path.mode == from_bytes.mode == from_pil.mode == "RGB"
    assert from_path.size == from_bytes.size == (64, 48)
    assert from_path.tobytes() == from_bytes.tobytes()


def test_exif_orientation_is_applied():
    img = load_image(_jpeg(size=(64, 48), exif_orientation=6))  # rotate 90° -> portrait
    assert img.size == (48, 64)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="not found") as err:
        load_image(tmp_path / "nope.jpg")
    assert err.value.hint


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageLoadError, match="is a directory, not an image file"):
        load_image(tmp_path)


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a JPEG")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(path)


def test_empty_file_and_empty_bytes(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_truncated_jpeg_fails_instead_of_returning_half_an_image(tmp_path):
    data = _jpeg(size=(256, 256))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(path)


def test_unsupported_type():
    with pytest.raises(ImageLoadError, match="unsupported"):
        load_image(12345)  # type: ignore[arg-type]


def test_image_ref(tmp_path):
    data = _jpeg()
    assert image_ref(str(tmp_path / "a.jpg")) == str(tmp_path / "a.jpg")
    assert image_ref("https://x.test/a.jpg") == "https://x.test/a.jpg"
    assert image_ref(data).startswith("sha256:") and image_ref(data) == image_ref(bytes(data))
    assert image_ref(data) != image_ref(_jpeg(color=(0, 0, 255)))
    assert image_ref(Image.open(io.BytesIO(data))).startswith("sha256:")
