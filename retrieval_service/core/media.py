"""Photos in, one way: resolving an input to a reference and a file the tools read, validating it,
and decoding it to an RGB PIL image.

Inputs are paths, raw bytes, PIL images and http(s) URLs. ``resolve_image`` gives the reference
the graph state carries (the path or URL, else ``sha256:<hex>`` of the content) and the input the
tools get (the path or URL; bytes and PIL images are written once, content-addressed, under the
cache dir). ``check_image_file`` is the cheap "is this a complete image" test; ``load_image`` decodes.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from retrieval_service.core.errors import ImageLoadError

logger = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | Image.Image

URL_TIMEOUT_S = 20.0
MAX_URL_BYTES = 50 * 1024 * 1024


def is_url(src: object) -> bool:
    """True for an http(s) URL string (any letter case)."""
    return isinstance(src, str) and src.lower().startswith(("http://", "https://"))


def check_url_target(url: str) -> None:
    """Refuse a URL whose host is, or resolves to, a loopback, private, link-local, multicast or
    reserved address (ImageLoadError), so a service cannot be made to fetch from its own network."""
    host = urlsplit(url).hostname
    if not is_url(url) or not host:
        raise ImageLoadError(f"not an http(s) URL: {url!r}", "give an http:// or https:// URL")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageLoadError(f"cannot resolve the host of {url}: {exc}", "check the URL") from exc
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise ImageLoadError(f"{url} points to a non-public address ({ip})",
                                 "give a public URL, or upload the photo itself")


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


class ResolvedImage(BaseModel):
    """A photo ready for the tools: ``ref`` for the state and reports, ``path`` (a local file or an
    http(s) URL) for the tools."""

    ref: str
    path: str


def check_image_file(path: Path) -> None:
    """Fail early on a file that is not a complete image, cheaply: JPEGs are decoded at 1/8 scale."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"not a readable image: {path} ({exc})",
                             "pass a complete JPEG/PNG/WebP file (the file may be truncated or not an image)") from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def local_image_path(ref: str) -> Path:
    """The path of an existing local image file named by ``ref`` (ImageLoadError otherwise)."""
    text = ref.strip()
    if not text:
        raise ImageLoadError("no image given", "pass the path of the photo")
    path = Path(text).expanduser()
    if not path.exists():
        raise ImageLoadError(f"image not found: {text}", "check the path (relative paths are from the current directory)")
    if not path.is_file():
        raise ImageLoadError(f"{text} is not a file", "pass the path of an image file, not a directory")
    return path


def resolve_image(src: ImageInput, cache_dir: Path) -> ResolvedImage:
    """Resolve a photo input once; raise ImageLoadError when it is unusable.

    Paths and URLs are their own reference and tool input (a local file is checked to be a complete
    image). Bytes and PIL images are referenced by the sha256 of their bytes and stored under
    ``cache_dir/images`` for the tools.
    """
    if isinstance(src, dict):
        raise ImageLoadError("the image input is a dict", 'pass {"image": <path|bytes|PIL image|url>}')
    if isinstance(src, (str, os.PathLike)):
        text = os.fspath(src)
        if is_url(text):
            return ResolvedImage(ref=text, path=text)
        path = local_image_path(text)
        check_image_file(path)
        return ResolvedImage(ref=str(path), path=str(path))
    if isinstance(src, Image.Image):
        buf = io.BytesIO()
        src.convert("RGB").save(buf, format="PNG")
        data, suffix = buf.getvalue(), ".png"
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageLoadError("the image bytes are empty", "pass the bytes of a JPEG/PNG file")
        suffix = "." + image_format(data, "the image bytes").lower()
    else:
        raise ImageLoadError(
            f"unsupported image input of type {type(src).__name__}", "pass a path, an http(s) URL, bytes or a PIL image"
        )
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(cache_dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    check_image_file(path)
    return ResolvedImage(ref=f"sha256:{digest}", path=str(path))


def image_format(data: bytes, name: str) -> str:
    """The image format PIL sees in ``data`` (ImageLoadError when it sees none)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format or "img"
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageLoadError(f"{name} are not an image PIL can read", "pass a JPEG, PNG, WebP or other common image file") from exc


def local_or_url(ref: str) -> str:
    """A tool's image argument, checked: an http(s) URL as given, or the path of an existing local file."""
    text = ref.strip()
    return text if is_url(text) else str(local_image_path(text))


def open_image(ref: str) -> Image.Image:
    """Load the photo a tool was given (a local path or an http(s) URL) as RGB, EXIF orientation applied."""
    return load_image(local_or_url(ref))
