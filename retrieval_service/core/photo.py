"""The photo, resolved once: ``Photo.resolve`` turns any photo input (a path, an http(s) URL, bytes,
a PIL image, a binary file object, or a ``sha256:`` reference to a photo resolved before) into a
``Photo`` handle: a checked local file and its content hash. It happens at the API boundary (the
CLI, ``agent.invoke``, the HTTP service), once per photo; the run context carries the handle to
every tool and the Retriever, which read ``photo.path`` or decode it and never resolve it again.

* Local files are used where they are. Bytes, file objects and downloads are written once under
  ``<cache_dir>/images`` named by their sha256, byte for byte, so their EXIF is intact; a PIL image
  is written as PNG with its EXIF, its orientation applied to the pixels (and the tag reset).
* Every file is checked (``media.inspect_image``: type, size, pixels, sides, a complete decode)
  before any model loads; ``Photo.decode`` then skips that check.
* ``ref`` is what reports and the graph state show: the path or URL as given, else
  ``sha256:<hex>``. ``key`` (``sha256:<hex>``) identifies the content wherever it came from.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media import (
    ImageMeta,
    _check_header,
    _orient,
    _to_rgb,
    decode_image,
    inspect_image,
    is_url,
    local_file,
)
from retrieval_service.core.media_settings import DEFAULT_LIMITS, MediaLimits

SHA_PREFIX = "sha256:"
HASH_CHUNK = 1 << 20
_INPUT_HINT = 'pass {"image": <path|bytes|PIL image|url|file object>}'


class Photo(BaseModel):
    """A photo ready for every consumer: ``path`` is a checked local file, ``sha256`` its content
    hash, ``ref`` what reports show, ``meta`` what the check found."""

    model_config = ConfigDict(frozen=True)

    ref: str
    path: str
    sha256: str
    meta: ImageMeta

    @property
    def key(self) -> str:
        """``sha256:<hex>``: the content's identity, however the photo was given."""
        return SHA_PREFIX + self.sha256

    @classmethod
    def resolve(cls, src: Any, cache_dir: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS) -> Photo:
        """Resolve a photo input into a checked local file; ImageLoadError names what is wrong and the fix.
        A ``Photo`` passes through as it is."""
        from retrieval_service.core.download import download

        if isinstance(src, Photo):
            return src
        if src is None:
            raise ImageLoadError("no image given", _INPUT_HINT)
        if isinstance(src, dict):
            raise ImageLoadError("the image input is a dict", _INPUT_HINT)
        if isinstance(src, str) and src.strip().startswith(SHA_PREFIX):
            return cls._cached(src.strip(), Path(cache_dir), limits)
        if is_url(src):
            url = src.strip()
            return cls._stored(download(url, limits), url, Path(cache_dir), limits)
        if isinstance(src, (str, os.PathLike)):
            file = local_file(src)
            meta = inspect_image(file, limits)
            return cls(ref=str(file), path=str(file), sha256=_file_sha256(file), meta=meta)
        if isinstance(src, Image.Image):
            return cls._stored(_pil_bytes(src, limits), "", Path(cache_dir), limits)
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            if not data:
                raise ImageLoadError("the image bytes are empty (0 bytes)", "pass the encoded contents of an image file")
            if len(data) > limits.max_image_bytes:
                raise ImageLoadError(
                    f"the image bytes are {len(data) / 2**20:.1f} MiB, more than the "
                    f"{limits.max_image_bytes / 2**20:.1f} MiB limit",
                    "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES",
                )
            return cls._stored(data, "", Path(cache_dir), limits)
        if hasattr(src, "read"):
            data = read_stream(src, limits)
            if not data:
                raise ImageLoadError("the file object is empty", "pass an open image file positioned at its start")
            return cls._stored(data, "", Path(cache_dir), limits)
        raise ImageLoadError(
            f"unsupported image input of type {type(src).__name__}",
            "pass a path, an http(s) URL, bytes, a PIL image or a binary file object",
        )

    @classmethod
    def _stored(cls, data: bytes, ref: str, cache_dir: Path, limits: MediaLimits) -> Photo:
        digest = hashlib.sha256(data).hexdigest()
        path = store_bytes(data, digest, cache_dir, _suffix(data))
        try:
            meta = inspect_image(path, limits)
        except ImageLoadError:
            path.unlink(missing_ok=True)  # an unusable input leaves nothing behind
            raise
        return cls(ref=ref or SHA_PREFIX + digest, path=str(path), sha256=digest, meta=meta)

    @classmethod
    def _cached(cls, ref: str, cache_dir: Path, limits: MediaLimits) -> Photo:
        """The stored file of a ``sha256:<hex>`` reference made by an earlier resolution."""
        digest = ref.removeprefix(SHA_PREFIX)
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ImageLoadError(f"{ref!r} is not a valid content reference", "pass the photo itself (a path, URL or bytes)")
        found = sorted((cache_dir / "images").glob(f"{digest}.*"))
        if not found:
            raise ImageLoadError(f"no stored photo for {ref}", "pass the photo itself again (a path, URL or bytes)")
        return cls(ref=ref, path=str(found[0]), sha256=digest, meta=inspect_image(found[0], limits))

    def decode(self, limits: MediaLimits = DEFAULT_LIMITS, *, max_side: int | None = None) -> Image.Image:
        """The pixels: RGB, EXIF orientation applied, large JPEGs decoded at reduced scale (see
        ``media.decode_image``); the file was checked when the photo was resolved."""
        return decode_image(self.path, limits, max_side=max_side, checked=True)

    def read_bytes(self) -> bytes:
        """The file's bytes, as given (EXIF intact)."""
        return Path(self.path).read_bytes()

    def check_present(self, cache_dir: str | os.PathLike | None = None) -> Photo:
        """This photo, after checking that its file is still there with the size it had (a thread
        continued later reads the photo again). When it is not, the copy of the same content under
        ``cache_dir`` (``images/<sha256>.*``: e.g. another replica's upload fetched there) is used,
        with that path; ImageLoadError when neither is there."""
        if _size(Path(self.path)) == self.meta.bytes:
            return self
        if cache_dir is not None:
            for stored in sorted((Path(cache_dir) / "images").glob(f"{self.sha256}.*")):
                if _size(stored) == self.meta.bytes:
                    return self.model_copy(update={"path": str(stored)})
        raise ImageLoadError(
            f"the photo {self.ref} is no longer at {self.path} as it was analysed", "analyse the photo again on a new thread"
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def store_bytes(data: bytes, digest: str, cache_dir: str | os.PathLike, suffix: str) -> Path:
    """``data`` (whose sha256 is ``digest``) as ``<cache_dir>/images/<digest><suffix>``, written once, atomically."""
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
        raise ImageLoadError(
            f"{name} holds more than the {limits.max_image_bytes / 2**20:.1f} MiB limit",
            "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES",
        )
    return bytes(data)
