"""Photos in, one way: every input (a path, bytes, a PIL image, an http(s) URL, a file-like object)
is resolved once into a local file, checked, and decoded the same way for every model.

* ``resolve_image(src, cache_dir, limits)`` gives a ``ResolvedImage``: ``ref`` (what the state and
  reports carry: the path or URL as given, else ``sha256:<hex>`` of the content) and ``path`` (a
  local file the tools read). Bytes, file-like objects and downloads are written once under
  ``cache_dir/images`` named by their sha256, byte for byte, so their EXIF is intact; a PIL image is
  written as PNG with its EXIF, its orientation applied to the pixels (and the tag reset). Local
  files are used where they are. Every file is checked (``inspect_image``) before any model loads.
* ``inspect_image`` checks existence, type, file size, pixel count (the decompression-bomb limit,
  on the header, before decoding), smallest side and aspect ratio, and that the data decodes.
* ``decode_image`` gives RGB pixels with the EXIF orientation applied; JPEGs much larger than the
  models need are decoded at reduced scale with ``draft()``; 16-bit and float images are scaled,
  not clipped. No global Pillow flag is ever changed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from cachetools import LRUCache
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media_settings import DEFAULT_LIMITS, MediaLimits

logger = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | Image.Image
SHA_PREFIX = "sha256:"
_KINDS_HINT = "pass a JPEG, PNG, WebP, GIF, BMP or TIFF photo"


def is_url(src: object) -> bool:
    """True for an http(s) URL string (any letter case)."""
    return isinstance(src, str) and src.strip().lower().startswith(("http://", "https://"))


class ImageMeta(BaseModel):
    """What the check of a photo found."""

    format: str
    width: int
    height: int
    mode: str
    bytes: int


class ResolvedImage(BaseModel):
    """A photo ready for the tools: ``ref`` for the state and reports, ``path`` (a local file) for the tools."""

    ref: str
    path: str
    meta: ImageMeta | None = None


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
            "downscale the photo, or raise GEOAGENT_MAX_IMAGE_PIXELS if you trust the file")
    if min(width, height) < limits.min_image_side:
        raise ImageLoadError(
            f"{name} is {width}x{height} pixels, too small to geolocate (less than {limits.min_image_side} px on a side)",
            f"pass a photo at least {limits.min_image_side} px on each side")
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limits.max_aspect_ratio:
        raise ImageLoadError(
            f"{name} is {width}x{height} pixels, an aspect ratio of {ratio:.0f}:1 (more than {limits.max_aspect_ratio:g}:1): "
            "a strip that thin cannot be geolocated",
            f"crop the photo to at most {limits.max_aspect_ratio:g}:1, or raise GEOAGENT_MAX_ASPECT_RATIO")


def _open(fp: Any, name: str, limits: MediaLimits) -> Image.Image:
    """Open (header only) and check the header; the caller closes the image."""
    try:
        img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name} is a decompression bomb ({exc})",
                             "downscale the photo; images over Pillow's hard limit cannot be read") from exc
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
        raise ImageLoadError(f"{name} is damaged or truncated ({exc})",
                             "re-download or re-export the photo; a partial file cannot be used") from exc


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
        raise ImageLoadError(f"{file} is {stat.st_size / 2**20:.1f} MiB, more than the {limits.max_image_bytes / 2**20:.1f} MiB limit",
                             "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES")
    with open(file, "rb") as fh:
        img = _open(fh, str(file), limits)
        with img:
            meta = ImageMeta(format=img.format or "unknown", width=img.width, height=img.height, mode=img.mode, bytes=stat.st_size)
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


def decode_image(path: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS, *, max_side: int | None = None) -> Image.Image:
    """The photo at ``path`` as RGB with its EXIF orientation applied, checked like ``inspect_image``.

    JPEGs whose long side is at least twice ``max_side`` (default ``limits.decode_max_side``) are
    decoded at a reduced DCT scale that keeps the long side >= ``max_side``.
    """
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
        raise ImageLoadError(f"{name} are {len(data) / 2**20:.1f} MiB, more than the limit", "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES")
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
        raise ImageLoadError(f"{text} is a directory, not an image file",
                             "pass the photo files themselves (e.g. photos/*.jpg), or use `geoagent eval run --images DIR`")
    if not file.is_file():
        raise ImageLoadError(f"{text} is not a regular file", "pass the path of an image file")
    if file.stat().st_size == 0:
        raise ImageLoadError(f"{text} is empty (0 bytes)", "pass a complete image file")
    return file


def _store(data: bytes, cache_dir: Path, suffix: str) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(cache_dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{suffix}"
    if not path.exists():
        tmp = folder / f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _suffix(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return "." + (img.format or "img").lower()
    except Exception:  # checked properly by inspect_image, which names the problem
        return ".bin"


def _pil_bytes(img: Image.Image, limits: MediaLimits) -> bytes:
    """A PIL image as PNG bytes: orientation applied to the pixels, the rest of its EXIF kept."""
    _check_header(img, "the PIL image", limits)
    try:
        img.load()
        oriented = _orient(img, "the PIL image")
        exif = oriented.getexif()
        mode = oriented.mode if oriented.mode in ("RGB", "RGBA", "L", "LA") else None
        out = oriented if mode else _to_rgb(oriented)
        buf = io.BytesIO()
        out.save(buf, format="PNG", exif=exif.tobytes() if len(exif) else b"")
        return buf.getvalue()
    except (OSError, ValueError, TypeError) as exc:
        raise ImageLoadError(f"the PIL image could not be read ({exc})", "pass a fully loaded image, or the file itself") from exc


def read_stream(src: Any, limits: MediaLimits) -> bytes:
    """The bytes of a file-like object, at most ``max_image_bytes``."""
    name = getattr(src, "name", None) or "the file object"
    try:
        data = src.read(limits.max_image_bytes + 1)
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"cannot read {name}: {exc}", "pass an open binary file, bytes or a path") from exc
    if isinstance(data, str):
        raise ImageLoadError(f"{name} is opened in text mode", "open the photo with open(path, 'rb')")
    if len(data) > limits.max_image_bytes:
        raise ImageLoadError(f"{name} holds more than the {limits.max_image_bytes / 2**20:.1f} MiB limit",
                             "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES")
    return bytes(data)


def resolve_image(src: Any, cache_dir: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS) -> ResolvedImage:
    """Resolve a photo input once into a checked local file; raise ImageLoadError when it is unusable."""
    from retrieval_service.core.download import download

    if isinstance(src, ResolvedImage):
        return src
    if src is None:
        raise ImageLoadError("no image given", 'pass {"image": <path|bytes|PIL image|url|file object>}')
    if isinstance(src, dict):
        raise ImageLoadError("the image input is a dict", 'pass {"image": <path|bytes|PIL image|url|file object>}')
    if isinstance(src, str) and src.strip().startswith(SHA_PREFIX):
        return cached_ref(src.strip(), Path(cache_dir), limits)
    if is_url(src):
        url = src.strip()
        data = download(url, limits)
        ref = url
    elif isinstance(src, (str, os.PathLike)):
        file = local_file(src)
        meta = inspect_image(file, limits)
        return ResolvedImage(ref=str(file), path=str(file), meta=meta)
    elif isinstance(src, Image.Image):
        data, ref = _pil_bytes(src, limits), ""
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data, ref = bytes(src), ""
        if not data:
            raise ImageLoadError("the image bytes are empty", "pass the encoded contents of an image file")
        if len(data) > limits.max_image_bytes:
            raise ImageLoadError(f"the image bytes are {len(data) / 2**20:.1f} MiB, more than the limit",
                                 "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES")
    elif hasattr(src, "read"):
        data, ref = read_stream(src, limits), ""
        if not data:
            raise ImageLoadError("the file object is empty", "pass an open image file positioned at its start")
    else:
        raise ImageLoadError(f"unsupported image input of type {type(src).__name__}",
                             "pass a path, an http(s) URL, bytes, a PIL image or a binary file object")
    path = _store(data, Path(cache_dir), _suffix(data))
    meta = inspect_image(path, limits)
    return ResolvedImage(ref=ref or SHA_PREFIX + path.stem, path=str(path), meta=meta)


def cached_ref(ref: str, cache_dir: Path, limits: MediaLimits = DEFAULT_LIMITS) -> ResolvedImage:
    """The stored file of a ``sha256:<hex>`` reference made by ``resolve_image``."""
    digest = ref.removeprefix(SHA_PREFIX)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ImageLoadError(f"{ref!r} is not a valid content reference", "pass the photo itself (a path, URL or bytes)")
    found = sorted((Path(cache_dir) / "images").glob(f"{digest}.*"))
    if not found:
        raise ImageLoadError(f"no stored photo for {ref}", "pass the photo itself again (a path, URL or bytes)")
    return ResolvedImage(ref=ref, path=str(found[0]), meta=inspect_image(found[0], limits))


def image_ref(src: ImageInput) -> str:
    """A stable reference for an image: the path or URL as given, else ``sha256:<hex>`` of its bytes."""
    if isinstance(src, ResolvedImage):
        return src.ref
    if isinstance(src, (bytes, bytearray, memoryview)):
        return SHA_PREFIX + hashlib.sha256(bytes(src)).hexdigest()
    if isinstance(src, Image.Image):
        img = src.convert("RGB")
        digest = hashlib.sha256()
        digest.update(f"{img.size[0]}x{img.size[1]}".encode())
        digest.update(img.tobytes())
        return SHA_PREFIX + digest.hexdigest()
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    raise ImageLoadError(f"unsupported image input of type {type(src).__name__}", "pass a path, an http(s) URL, bytes or a PIL image")


def load_image(src: Any, limits: MediaLimits = DEFAULT_LIMITS, *, max_side: int | None = None) -> Image.Image:
    """Any photo input as checked RGB pixels with the EXIF orientation applied (URLs are downloaded
    into memory; use ``resolve_image`` to keep the file)."""
    from retrieval_service.core.download import download

    if isinstance(src, ResolvedImage):
        return decode_image(src.path, limits, max_side=max_side)
    if isinstance(src, Image.Image):
        return decode_bytes(_pil_bytes(src, limits), "the PIL image", limits)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(src), "the image bytes", limits)
    if is_url(src):
        return decode_bytes(download(src.strip(), limits), src.strip(), limits)
    if isinstance(src, (str, os.PathLike)):
        return decode_image(local_file(src), limits, max_side=max_side)
    if hasattr(src, "read"):
        return decode_bytes(read_stream(src, limits), getattr(src, "name", None) or "the file object", limits)
    raise ImageLoadError(f"unsupported image input of type {type(src).__name__}",
                         "pass a path, an http(s) URL, bytes, a PIL image or a binary file object")


def tool_image_path(image: Any, settings: Any) -> str:
    """The checked local file of a tool's image argument: a path, a ``sha256:`` reference or an
    http(s) URL (downloaded once into the cache dir). ``settings`` holds the media limits and cache dir."""
    return resolve_image(image, settings.cache_dir, settings).path


def open_image(image: Any, settings: Any = None, *, max_side: int | None = None) -> Image.Image:
    """A tool's image argument decoded (RGB, oriented, checked)."""
    if settings is None:
        return load_image(image, max_side=max_side)
    return decode_image(tool_image_path(image, settings), settings, max_side=max_side)
