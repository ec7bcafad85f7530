"""Bounded decode memory: a huge non-JPEG is reduced right after decoding (before the copies that
orientation and RGB conversion make), kept for the next consumer at that size, and full-size
decodes across threads share one pixel budget; a bomb beyond Pillow's own limit is reported with the
configured limit."""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from retrieval_service.core import media
from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media_settings import MediaLimits
from retrieval_service.core.photo import Photo


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels, written row by row (a few KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture()
def big_png(tmp_path: Path) -> Path:
    path = tmp_path / "big.png"
    Image.new("L", (6000, 4000), 128).save(path)  # 24 Mpx
    return path


def test_a_huge_png_comes_out_reduced_and_the_next_consumer_reuses_it(big_png, tmp_path, monkeypatch):
    """Before: every consumer decoded the whole PNG and copied it at full size (orientation, RGB)."""
    limits = MediaLimits(decode_max_side=1000)
    photo = Photo.resolve(big_png, tmp_path / "cache", limits)
    loads: list[tuple[int, int]] = []
    real = media._load
    monkeypatch.setattr(media, "_load", lambda img, name, lim: loads.append(img.size) or real(img, name, lim))
    first = photo.decode(limits)
    assert first.mode == "RGB" and first.size == (1000, 667)  # a whole factor: the long side stays >= 1000
    again = photo.decode(limits)
    assert again.size == first.size and loads == []  # the check at resolve time decoded it once, for both
    smaller = photo.decode(limits, max_side=500)
    assert smaller.size == (500, 334) and loads == [(6000, 4000)]  # another size: decoded again, reduced
    again.putpixel((0, 0), (1, 2, 3))
    assert photo.decode(limits).getpixel((0, 0)) == (128, 128, 128)  # consumers get copies


def test_full_size_decodes_share_one_pixel_budget(big_png, tmp_path):
    """Before: four huge PNGs decoded at once held all their buffers together (+1.5 GB)."""
    limits = MediaLimits(decode_pixel_budget=30_000_000, decode_max_side=400)
    copies = []
    for i in range(3):
        copy = tmp_path / f"copy{i}.png"
        copy.write_bytes(big_png.read_bytes() + b"\0" * i)  # distinct files: no shared decode
        copies.append(copy)
    held: list[int] = []
    budget = media.DECODE_BUDGET
    real_hold = budget.hold

    def watch(pixels: int, capacity: int):
        held.append(budget._held + min(pixels, capacity))
        return real_hold(pixels, capacity)

    budget.hold = watch  # type: ignore[method-assign]
    waits = budget.waits
    try:
        threads = [threading.Thread(target=media.decode_image, args=(c, limits)) for c in copies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        del budget.hold
    assert budget._held == 0
    assert budget.waits > waits  # 24 Mpx each under a 30 Mpx budget: they took turns


def test_a_bomb_beyond_pillows_limit_names_the_configured_limit(tmp_path):
    """Before: the error quoted Pillow's limit (178,956,970), not GEOAGENT_MAX_IMAGE_PIXELS."""
    path = bomb_png(tmp_path / "bomb.png", 14_000, 13_000)  # 182 Mpx in a few KB
    limits = MediaLimits(max_image_pixels=50_000_000)
    with pytest.raises(ImageLoadError) as err:
        Photo.resolve(path, tmp_path / "cache", limits)
    assert "182,000,000 pixels" in err.value.message and "limit of 50,000,000" in err.value.message
    assert "178956970" not in err.value.message and "178,956,970" not in err.value.message
    assert err.value.hint and "downscale" in err.value.hint
