"""Checking and decoding photo files, the same way for every model.

* ``inspect_image`` checks existence, type, file size, pixel count (the decompression-bomb limit,
  on the header, before decoding), smallest side and aspect ratio, and that the data decodes.
* ``decode_image`` gives RGB pixels with the EXIF orientation applied, no larger than the consumer
  needs (``max_side``): JPEGs are decoded at reduced scale with ``draft()``; other formats, which
  can only be decoded whole, are reduced right after decoding, before any copy (orientation, RGB),
  and the result is kept in a small LRU so the next consumer at that size does not decode them
  again. Full-size decodes share a pixel budget across the process (``decode_pixel_budget``): four
  huge PNGs at once wait for each other instead of holding their buffers together. 16-bit and
  float images are scaled, not clipped. No global Pillow flag is ever changed. ``decode_bytes``
  does the same for bytes in memory.

Photo *inputs* (a path, bytes, a PIL image, an http(s) URL, a file object) are resolved once, at the
API boundary, into a ``Photo`` handle (``retrieval_service.core.photo``) that uses these checks.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from cachetools import LRUCache
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media_settings import DEFAULT_LIMITS, MediaLimits

logger = logging.getLogger(__name__)

_KINDS_HINT = "pass a JPEG, PNG, WebP, GIF, BMP or TIFF photo"


def is_url(src: object) -> bool:
    """True for an http(s) URL string (any letter case)."""
    return isinstance(src, str) and src.strip().lower().startswith(("http://", "https://"))


class ImageMeta(BaseModel):
    """What the check of a photo found."""

    model_config = ConfigDict(frozen=True)

    format: str
    width: int
    height: int
    mode: str
    bytes: int


def _sniff(head: bytes) -> str:
    """What a non-image file looks like, for the error message."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text[:512]:
        return "an HTML page"
    if text.startswith((b"<?xml", b"<svg")):
        return "an XML/SVG document (vector images are not supported)"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not an image format Pillow can read"


def _check_header(img: Image.Image, name: str, limits: MediaLimits) -> None:
    width, height = img.size
    pixels = width * height
    if pixels > limits.max_image_pixels:
        raise ImageLoadError(
            f"{name} is {width}x{height} = {pixels:,} pixels, more than the limit of {limits.max_image_pixels:,} "
            "(a decompression bomb or a huge image)",
            "downscale the photo, or raise GEOAGENT_MAX_IMAGE_PIXELS if you trust the file",
        )
    if min(width, height) < limits.min_image_side:
        raise ImageLoadError(
            f"{name} is {width}x{height} pixels, too small to geolocate (less than {limits.min_image_side} px on a side)",
            f"pass a photo at least {limits.min_image_side} px on each side",
        )
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limits.max_aspect_ratio:
        raise ImageLoadError(
            f"{name} is {width}x{height} pixels, an aspect ratio of {ratio:.0f}:1 (more than {limits.max_aspect_ratio:g}:1): "
            "a strip that thin cannot be geolocated",
            f"crop the photo to at most {limits.max_aspect_ratio:g}:1, or raise GEOAGENT_MAX_ASPECT_RATIO",
        )


def _bomb(name: str, exc: Exception, limits: MediaLimits) -> ImageLoadError:
    """Pillow refused an image beyond its own hard limit: said with the configured limit."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow reads"
    return ImageLoadError(
        f"{name} is {size}, more than the limit of {limits.max_image_pixels:,} (a decompression bomb or a huge image)",
        "downscale the photo; GEOAGENT_MAX_IMAGE_PIXELS cannot go above Pillow's own hard limit",
    )


def _open(fp: Any, name: str, limits: MediaLimits) -> Image.Image:
    """Open (header only) and check the header; the caller closes the image."""
    try:
        img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise _bomb(name, exc, limits) from exc
    except UnidentifiedImageError as exc:
        fp.seek(0)
        head = fp.read(1024)
        raise ImageLoadError(f"{name} is {_sniff(head)}, not an image", _KINDS_HINT) from exc
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        raise ImageLoadError(f"{name} cannot be read as an image ({exc})", _KINDS_HINT) from exc
    try:
        _check_header(img, name, limits)
    except ImageLoadError:
        img.close()
        raise
    return img


def _draft(img: Image.Image, max_side: int) -> None:
    """Let the JPEG decoder scale down by 1/2..1/8 while the long side stays >= ``max_side``."""
    if img.format != "JPEG" or max(img.size) < 2 * max_side:
        return
    scale = max_side / max(img.size)
    img.draft("RGB", (max(1, int(img.width * scale)), max(1, int(img.height * scale))))


class PixelBudget:
    """The pixels being decoded at full size across the process, held under a capacity: a decode
    waits while the others in flight hold the budget (one larger than all of it runs alone)."""

    def __init__(self) -> None:
        self._held = 0
        self._cond = threading.Condition()
        self.waits = 0  # decodes that had to wait for the budget

    @contextmanager
    def hold(self, pixels: int, capacity: int) -> Iterator[None]:
        want = max(0, min(pixels, capacity))
        with self._cond:
            if self._held and self._held + want > capacity:
                self.waits += 1
            while self._held and self._held + want > capacity:
                self._cond.wait()
            self._held += want
        try:
            yield
        finally:
            with self._cond:
                self._held -= want
                self._cond.notify_all()


DECODE_BUDGET = PixelBudget()


def _load(img: Image.Image, name: str, limits: MediaLimits) -> None:
    """Decode the pixels (at the draft size, when one was set)."""
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise _bomb(name, exc, limits) from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageLoadError(
            f"{name} is damaged or truncated ({exc})", "re-download or re-export the photo; a partial file cannot be used"
        ) from exc


def _decode(img: Image.Image, name: str, limits: MediaLimits, side: int) -> Image.Image:
    """Decode ``img`` within the process's pixel budget and turn it into what a consumer takes
    (``_finish``: reduced, oriented, RGB) before the budget is released, so the full-size buffer
    never outlives its share of the budget."""
    with DECODE_BUDGET.hold(img.width * img.height, limits.decode_pixel_budget):
        _load(img, name, limits)
        return _detached(img, _finish(img, name, side))


def _reduce(img: Image.Image, max_side: int) -> Image.Image:
    """A decoded image whose long side is at least twice ``max_side`` reduced by a whole factor (a
    box filter, like a JPEG draft) that keeps the long side >= ``max_side``; else as it is."""
    factor = max(img.size) // max_side
    if factor < 2:
        return img
    if img.mode in ("P", "1"):  # palette indices cannot be averaged
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    try:
        return img.reduce(factor)
    except (ValueError, NotImplementedError):  # a mode reduce() does not take
        return img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.Resampling.BOX)


def inspect_image(path: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS) -> ImageMeta:
    """Check a local photo file without keeping its pixels; ImageLoadError names the problem and the fix.

    Checks, cheapest first: it exists and is a file, it is not empty or over ``max_image_bytes``, its
    header is an image within the pixel, side and aspect-ratio limits, and its data decodes
    completely (JPEGs at 1/8 scale). Results are cached by (path, size, mtime).
    """
    file = local_file(path)
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, *(getattr(limits, f) for f in MediaLimits.model_fields))
    with _INSPECTED_LOCK:
        known = _INSPECTED.get(key)
    if known is not None:
        return known
    if stat.st_size > limits.max_image_bytes:
        raise ImageLoadError(
            f"{file} is {stat.st_size / 2**20:.1f} MiB, more than the {limits.max_image_bytes / 2**20:.1f} MiB limit",
            "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES",
        )
    with open(file, "rb") as fh:
        img = _open(fh, str(file), limits)
        with img:
            meta = ImageMeta(
                format=img.format or "unknown", width=img.width, height=img.height, mode=img.mode, bytes=stat.st_size
            )
            if img.format == "JPEG":  # checked at 1/8 scale
                _draft(img, 64)
                with DECODE_BUDGET.hold(img.width * img.height, limits.decode_pixel_budget):
                    _load(img, str(file), limits)
            else:  # decoded whole: keep the result a consumer would decode again
                side = limits.decode_max_side
                _remember(_decode_key(file, side), _decode(img, str(file), limits, side))
    with _INSPECTED_LOCK:
        _INSPECTED[key] = meta
    return meta


_INSPECTED: LRUCache = LRUCache(maxsize=1024)
_INSPECTED_LOCK = threading.Lock()
# decoded non-JPEG photos at a consumer's size, by (file, size, mtime, max_side); bounded in pixels
_DECODED: LRUCache = LRUCache(maxsize=48_000_000, getsizeof=lambda img: img.width * img.height)
_DECODED_LOCK = threading.Lock()


def _decode_key(file: Path, max_side: int) -> tuple:
    stat = file.stat()
    return (str(file.resolve()), stat.st_size, stat.st_mtime_ns, max_side)


def _remember(key: tuple, img: Image.Image) -> None:
    if img.width * img.height <= _DECODED.maxsize // 4:
        with _DECODED_LOCK:
            _DECODED[key] = img


def _recall(key: tuple) -> Image.Image | None:
    with _DECODED_LOCK:
        img = _DECODED.get(key)
    return img.copy() if img is not None else None


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB pixels from any mode: 16-bit and float images are scaled to 8 bits, alpha dropped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if img.mode == "F" and top <= 1.0:
            arr = arr * 255.0
        elif top > 255:
            arr = arr * (255.0 / (65535.0 if top <= 65535 else top))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def _detached(opened: Image.Image, result: Image.Image) -> Image.Image:
    """``result`` independent of the file ``opened`` reads from (which is about to be closed)."""
    return result.copy() if result is opened else result


def _finish(img: Image.Image, name: str, max_side: int) -> Image.Image:
    """Decoded pixels as a consumer takes them: reduced first (before any copy), then oriented, RGB."""
    return _to_rgb(_orient(_reduce(img, max_side), name))


def _orient(img: Image.Image, name: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except (ValueError, TypeError, KeyError, OSError, SyntaxError) as exc:  # malformed EXIF: keep the pixels as stored
        logger.info("%s: ignoring an unreadable EXIF orientation (%s)", name, exc)
        return img


def decode_image(
    path: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS, *, max_side: int | None = None, checked: bool = False
) -> Image.Image:
    """The photo at ``path`` as RGB with its EXIF orientation applied, checked like ``inspect_image``
    (unless ``checked``: a ``Photo`` was checked when it was resolved).

    Photos whose long side is at least twice ``max_side`` (default ``limits.decode_max_side``) come
    out reduced by a whole factor that keeps the long side >= ``max_side``: JPEGs decoded at that
    DCT scale, other formats reduced right after decoding (and kept for the next consumer).
    """
    if not checked:
        inspect_image(path, limits)
    file = Path(path)
    side = max_side or limits.decode_max_side
    key = _decode_key(file, side)
    known = _recall(key)
    if known is not None:
        return known
    with open(file, "rb") as fh:
        img = _open(fh, str(file), limits)
        with img:
            _draft(img, side)
            out = _decode(img, str(file), limits, side)
    if img.format != "JPEG":
        _remember(key, out.copy())
    return out


def decode_bytes(data: bytes, name: str = "the image bytes", limits: MediaLimits = DEFAULT_LIMITS) -> Image.Image:
    """Like ``decode_image`` for encoded bytes held in memory."""
    if not data:
        raise ImageLoadError(f"{name}: no data (0 bytes)", "pass the encoded contents of an image file")
    if len(data) > limits.max_image_bytes:
        raise ImageLoadError(
            f"{name}: {len(data) / 2**20:.1f} MiB, more than the {limits.max_image_bytes / 2**20:.1f} MiB limit",
            "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES",
        )
    img = _open(io.BytesIO(data), name, limits)
    with img:
        _draft(img, limits.decode_max_side)
        return _decode(img, name, limits, limits.decode_max_side)


def local_file(path: str | os.PathLike) -> Path:
    """An existing local file (ImageLoadError naming a missing path or a directory)."""
    text = os.fspath(path).strip() if isinstance(path, str) else os.fspath(path)
    if not text:
        raise ImageLoadError("no image given (an empty path)", "pass the path of the photo")
    file = Path(text).expanduser()
    if not file.exists():
        raise ImageLoadError(f"image not found: {text}", "check the path (relative paths are from the current directory)")
    if file.is_dir():
        raise ImageLoadError(
            f"{text} is a directory, not an image file",
            "pass the photo files themselves (e.g. photos/*.jpg), or use `geoagent eval run --images DIR`",
        )
    if not file.is_file():
        raise ImageLoadError(f"{text} is not a regular file", "pass the path of an image file")
    if file.stat().st_size == 0:
        raise ImageLoadError(f"{text} is empty (0 bytes)", "pass a complete image file")
    return file
