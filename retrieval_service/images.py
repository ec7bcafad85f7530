"""Reading photos: paths, raw bytes, PIL images and http(s) URLs, all to an RGB PIL image."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path

import httpx
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from retrieval_service.errors import ImageLoadError

logger = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | Image.Image

URL_TIMEOUT_S = 20.0
MAX_URL_BYTES = 50 * 1024 * 1024


def is_url(src: object) -> bool:
    """True for an http(s) URL string (any letter case)."""
    return isinstance(src, str) and src.lower().startswith(("http://", "https://"))


def _fetch(url: str) -> bytes:
    try:
        with httpx.Client(timeout=URL_TIMEOUT_S, follow_redirects=True) as client:
            response = client.get(url)
            response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        raise ImageLoadError(
            f"could not download {url}: HTTP {exc.response.status_code}", "check the URL or download the photo and pass the file"
        ) from exc
    except httpx.HTTPError as exc:
        raise ImageLoadError(
            f"could not download {url}: {type(exc).__name__}: {exc}",
            "check the network connection, or download the photo and pass the local file",
        ) from exc
    if len(response.content) > MAX_URL_BYTES:
        raise ImageLoadError(f"{url} is larger than {MAX_URL_BYTES // 2**20} MiB", "pass a smaller photo")
    return response.content


def _decode(data: bytes, name: str) -> Image.Image:
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not come back half grey
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{name} is not an image PIL can read", "pass a JPEG, PNG, WebP or other common image file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(
            f"{name} is damaged or truncated ({exc})", "re-download or re-export the photo; a partial file cannot be used"
        ) from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def load_image(src: ImageInput) -> Image.Image:
    """Return ``src`` as an RGB PIL image with its EXIF orientation applied.

    ``src`` is a file path, raw encoded bytes, a PIL image or an http(s) URL (fetched with httpx,
    20 s timeout). Raises ImageLoadError for a missing file, a non-image, a truncated file or a
    failed download.
    """
    if isinstance(src, Image.Image):
        try:
            src.load()
            return ImageOps.exif_transpose(src).convert("RGB")
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"the PIL image could not be read ({exc})", "pass a fully loaded image") from exc
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageLoadError("the image bytes are empty", "pass the encoded contents of an image file")
        return _decode(data, "the image bytes")
    if is_url(src):
        return _decode(_fetch(str(src)), str(src))
    if isinstance(src, (str, os.PathLike)):
        path = Path(src).expanduser()
        if not path.exists():
            raise ImageLoadError(f"image file not found: {path}", "check the path (relative paths are from the current directory)")
        if not path.is_file():
            raise ImageLoadError(f"{path} is not a file", "pass the path of an image file, not a directory")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageLoadError(f"cannot read {path}: {exc}", "check the file permissions") from exc
        if not data:
            raise ImageLoadError(f"{path} is empty (0 bytes)", "pass a complete image file")
        return _decode(data, str(path))
    raise ImageLoadError(
        f"unsupported image input of type {type(src).__name__}", "pass a path, an http(s) URL, bytes or a PIL image"
    )


def image_ref(src: ImageInput) -> str:
    """A stable reference for an image: the path or URL as given, else ``sha256:<hex>`` of its bytes."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(bytes(src)).hexdigest()
    if isinstance(src, Image.Image):
        img = src.convert("RGB")
        digest = hashlib.sha256()
        digest.update(f"{img.size[0]}x{img.size[1]}".encode())
        digest.update(img.tobytes())
        return "sha256:" + digest.hexdigest()
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    raise ImageLoadError(
        f"unsupported image input of type {type(src).__name__}", "pass a path, an http(s) URL, bytes or a PIL image"
    )
