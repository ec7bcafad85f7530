"""Checking and decoding photo files, the same way for every model.

* ``inspect_image`` checks existence, type, file size, pixel count (the decompression-bomb limit,
  on the header, before decoding), smallest side and aspect ratio, and that the data decodes.
* ``decode_image`` gives RGB pixels with the EXIF orientation applied; JPEGs much larger than the
  models need are decoded at reduced scale with ``draft()``; 16-bit and float images are scaled,
  not clipped. No global Pillow flag is ever changed. ``decode_bytes`` does the same for bytes in memory.

Photo *inputs* (a path, bytes, a PIL image, an http(s) URL, a file object) are resolved once, at the
API boundary, into a ``Photo`` handle (``retrieval_service.core.photo``) that uses these checks.
"""

from __future__ import annotations

import io
import logging
import os
import threading
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


def _open(fp: Any, name: str, limits: MediaLimits) -> Image.Image:
    """Open (header only) and check the header; the caller closes the image."""
    try:
        img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"{name} is a decompression bomb ({exc})", "downscale the photo; images over Pillow's hard limit cannot be read"
        ) from exc
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


def _load(img: Image.Image, name: str) -> None:
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name} is a decompression bomb ({exc})", "downscale the photo") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageLoadError(
            f"{name} is damaged or truncated ({exc})", "re-download or re-export the photo; a partial file cannot be used"
        ) from exc


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
            _draft(img, 64)
            _load(img, str(file))
    with _INSPECTED_LOCK:
        _INSPECTED[key] = meta
    return meta


_INSPECTED: LRUCache = LRUCache(maxsize=1024)
_INSPECTED_LOCK = threading.Lock()


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

    JPEGs whose long side is at least twice ``max_side`` (default ``limits.decode_max_side``) are
    decoded at a reduced DCT scale that keeps the long side >= ``max_side``.
    """
    if not checked:
        inspect_image(path, limits)
    file = Path(path)
    with open(file, "rb") as fh:
        img = _open(fh, str(file), limits)
        with img:
            _draft(img, max_side or limits.decode_max_side)
            _load(img, str(file))
            return _detached(img, _to_rgb(_orient(img, str(file))))


def decode_bytes(data: bytes, name: str = "the image bytes", limits: MediaLimits = DEFAULT_LIMITS) -> Image.Image:
    """Like ``decode_image`` for encoded bytes held in memory."""
    if not data:
        raise ImageLoadError(f"{name} are empty", "pass the encoded contents of an image file")
    if len(data) > limits.max_image_bytes:
        raise ImageLoadError(
            f"{name} are {len(data) / 2**20:.1f} MiB, more than the limit",
            "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES",
        )
    img = _open(io.BytesIO(data), name, limits)
    with img:
        _draft(img, limits.decode_max_side)
        _load(img, name)
        return _detached(img, _to_rgb(_orient(img, name)))


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
