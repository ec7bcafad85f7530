"""A photo from a request: a multipart upload (field ``image``) or a JSON body ``{"url": ...}``,
checked before any model sees it (content type, size, a complete decodable image), with the
request's other fields. URLs are fetched here, each redirect hop checked against the URL policy
(``media.check_url_target``: no loopback, private or link-local targets unless allowed)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request
from PIL import Image, ImageFile, UnidentifiedImageError
from starlette.datastructures import UploadFile

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media import URL_TIMEOUT_S, check_url_target, is_url
from retrieval_service.service.errors import ServiceError
from retrieval_service.service.limits import too_large

IMAGE_FIELD = "image"
JSON_FORM_FIELDS = frozenset({"filter", "locations"})  # multipart fields that carry JSON text
MAX_IMAGES = 64
_UPLOAD_TYPES = ("image/", "application/octet-stream")


def validate_image(data: bytes, name: str = "the uploaded image") -> None:
    """ImageLoadError unless ``data`` is a complete image PIL can decode (JPEGs checked at 1/8 scale)."""
    if not data:
        raise ImageLoadError(f"{name} is empty", "send the bytes of a JPEG, PNG or WebP photo")
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{name} is not an image", "send a JPEG, PNG, WebP or other common image file") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name} has too many pixels ({exc})", "downscale the photo to a few megapixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{name} is damaged or truncated ({exc})", "send the complete file (re-export or re-download it)") from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def fetch_url(url: str, *, allow_private: bool, max_bytes: int, timeout_s: float = URL_TIMEOUT_S) -> bytes:
    """Download ``url`` (redirects followed, each hop checked unless ``allow_private``), at most ``max_bytes``."""
    if not is_url(url):
        raise ServiceError(422, "invalid_argument", f"url must be an http(s) URL, got {url[:100]!r}", "give an http:// or https:// URL")

    def guard(request: httpx.Request) -> None:
        if not allow_private:
            try:
                check_url_target(str(request.url))
            except ImageLoadError as exc:
                raise ServiceError(400, "url_not_allowed", exc.message,
                                   f"{exc.hint} (the server's GEOAGENT_SERVICE_ALLOW_PRIVATE_URLS allows such targets)") from exc

    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=True, event_hooks={"request": [guard]}) as client:
            with client.stream("GET", url) as response:
                response.raise_for_status()
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise too_large(max_bytes)
                    chunks.append(chunk)
    except httpx.HTTPStatusError as exc:
        raise ServiceError(422, "url_failed", f"could not download {url}: HTTP {exc.response.status_code}",
                           "check the URL, or upload the photo itself") from exc
    except httpx.HTTPError as exc:
        raise ServiceError(422, "url_failed", f"could not download {url}: {type(exc).__name__}: {exc}",
                           "check the URL is reachable from the server, or upload the photo itself") from exc
    return b"".join(chunks)


@dataclass
class ImageSource:
    """What a request gave for one photo: its bytes, or a URL to fetch (on a worker thread)."""

    data: bytes | None = None
    url: str | None = None
    name: str = "the uploaded image"

    def load(self, *, allow_private: bool, max_bytes: int) -> bytes:
        data = self.data if self.url is None else fetch_url(self.url, allow_private=allow_private, max_bytes=max_bytes)
        validate_image(data, self.name if self.url is None else self.url)
        return data


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServiceError(400, "bad_json", f"the body is not valid JSON ({exc})", 'send e.g. {"url": "https://..."}') from exc
    if not isinstance(body, dict):
        raise ServiceError(422, "invalid_argument", "the JSON body must be an object", 'send e.g. {"url": "https://..."}')
    return body


async def read_request(request: Request, *, images: str = "one", json_only_ok: bool = False) -> tuple[list[ImageSource], dict[str, Any]]:
    """The photos (``images``: "one" or "many" uploads) and the other fields of a request.

    ``json_only_ok``: a JSON body without ``url`` is fine (it carries other inputs, e.g. locations).
    """
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=MAX_IMAGES, max_fields=64)
        uploads = form.getlist(IMAGE_FIELD)
        if not uploads or not all(isinstance(u, UploadFile) for u in uploads):
            raise ServiceError(422, "missing_image", f"no file in the multipart field '{IMAGE_FIELD}'",
                               f"send the photo as the file field '{IMAGE_FIELD}' (curl -F {IMAGE_FIELD}=@photo.jpg ...)")
        if images == "one" and len(uploads) > 1:
            raise ServiceError(422, "invalid_argument", f"{len(uploads)} files in '{IMAGE_FIELD}', this endpoint takes one",
                               "send one photo per request")
        sources = []
        for upload in uploads:
            kind = (upload.content_type or "application/octet-stream").lower()
            if not kind.startswith(_UPLOAD_TYPES):
                raise ServiceError(415, "unsupported_media_type", f"the file '{upload.filename}' is sent as {kind}, not an image",
                                   "send a JPEG, PNG or WebP file with an image/* content type (or application/octet-stream)")
            sources.append(ImageSource(data=await upload.read(), name=f"the uploaded file '{upload.filename or IMAGE_FIELD}'"))
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == IMAGE_FIELD:
                continue
            if isinstance(value, UploadFile):
                raise ServiceError(422, "invalid_argument", f"unexpected file in field '{key}'", f"only '{IMAGE_FIELD}' takes files")
            if key in JSON_FORM_FIELDS:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ServiceError(422, "invalid_argument", f"field '{key}' is not valid JSON ({exc})",
                                       f"send '{key}' as JSON text, e.g. -F '{key}={{\"country_code\": \"FR\"}}'") from exc
            fields[key] = value
        return sources, fields
    if ctype == "application/json":
        body = await _json_body(request)
        url = body.pop("url", None)
        if url is None:
            if json_only_ok:
                return [], body
            raise ServiceError(422, "missing_image", "the JSON body has no 'url'",
                               f"send {{\"url\": \"https://...\"}}, or upload the photo as multipart field '{IMAGE_FIELD}'")
        if not isinstance(url, str):
            raise ServiceError(422, "invalid_argument", "'url' must be a string", "give an http(s) URL")
        return [ImageSource(url=url)], body
    raise ServiceError(415, "unsupported_media_type", f"the request's content type is {ctype or 'missing'}",
                       f"send multipart/form-data with the photo in field '{IMAGE_FIELD}', or application/json {{\"url\": ...}}")
