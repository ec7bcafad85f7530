"""A corpus of hostile and odd photo inputs for the fuzz suites (built in a temp folder, a few MB).

``build_corpus(folder)`` returns {name: path}; ``EXPECTED_VALID`` are the names that must come out
as answers (the others must come out as clear ImageLoadErrors).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def _photo(size=(96, 72), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def build_corpus(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def save(name: str, img: Image.Image, fmt: str, **kw) -> None:
        path = folder / name
        img.save(path, fmt, **kw)
        out[name] = path

    def raw(name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        out[name] = folder / name

    buf = io.BytesIO()
    _photo((300, 200)).save(buf, "JPEG")
    raw("zero.jpg", b"")
    raw("truncated.jpg", buf.getvalue()[: len(buf.getvalue()) // 2])
    raw("text.jpg", b"just some notes, not a photo\n")
    raw("random.jpg", np.random.default_rng(1).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    raw("page.jpg", b"<!doctype html><html><body>404</body></html>")
    save("one_pixel.png", Image.new("RGB", (1, 1)), "PNG")
    save("wide_strip.jpg", Image.new("RGB", (16000, 12), (90, 90, 90)), "JPEG")
    save("tall_strip.jpg", Image.new("RGB", (12, 16000), (90, 90, 90)), "JPEG")
    save("bomb.png", Image.new("1", (12000, 9000)), "PNG")  # 108 Mpx in a few KB
    save("gray.jpg", _photo().convert("L"), "JPEG")
    save("cmyk.jpg", _photo().convert("CMYK"), "JPEG")
    save("rgba.png", _photo().convert("RGBA"), "PNG")
    save("palette.png", _photo().convert("P"), "PNG")
    frames = [_photo(seed=s) for s in range(3)]
    frames[0].save(folder / "animated.gif", "GIF", save_all=True, append_images=frames[1:])
    out["animated.gif"] = folder / "animated.gif"
    save("photo.webp", _photo(), "WEBP")
    save("photo.bmp", _photo(), "BMP")
    save("photo.tiff", _photo(), "TIFF")
    save("sixteen_bit.png", Image.fromarray(np.arange(96 * 72, dtype=np.uint16).reshape(72, 96) * 9), "PNG")
    rotated = Image.Exif()
    rotated[0x0112] = 6
    save("rotated.jpg", _photo(), "JPEG", exif=rotated.tobytes())
    gps = Image.Exif()
    gps[0x8825] = {1: "N", 2: (123.0, 0.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)}
    save("gps_out_of_range.jpg", _photo(), "JPEG", exif=gps.tobytes())
    save("ünïcødé 写真 with spaces.jpg", _photo(), "JPEG")
    (folder / "a_directory").mkdir(exist_ok=True)
    out["a_directory"] = folder / "a_directory"
    out["missing.jpg"] = folder / "missing.jpg"
    return out


EXPECTED_VALID = {
    "gray.jpg",
    "cmyk.jpg",
    "rgba.png",
    "palette.png",
    "animated.gif",
    "photo.webp",
    "photo.bmp",
    "photo.tiff",
    "sixteen_bit.png",
    "rotated.jpg",
    "gps_out_of_range.jpg",
    "ünïcødé 写真 with spaces.jpg",
}
