"""A photo from a request: a multipart upload (field ``image``) or a JSON body ``{"url": ...}``,
with the request's other fields. ``ImageSource.resolve`` makes it ONE ``Photo`` before any model
sees it: the bytes (a URL is fetched here, each redirect hop checked against the URL policy of
``core.download``: no loopback, private or link-local targets unless allowed) are checked and
stored content-addressed under the cache dir by ``Photo.resolve``; the endpoints pass that Photo on,
so nothing decodes or checks the same bytes again."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from retrieval_service.core.download import download
from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media import is_url
from retrieval_service.core.media_settings import DEFAULT_LIMITS, MediaLimits
from retrieval_service.core.photo import Photo
from retrieval_service.service.errors import ServiceError, bad_json
from retrieval_service.service.limits import too_large

IMAGE_FIELD = "image"
JSON_FORM_FIELDS = frozenset({"filter", "locations"})  # multipart fields that carry JSON text
MAX_IMAGES = 64
_UPLOAD_TYPES = ("image/", "application/octet-stream")


def resolve_upload(data: bytes, name: str, cache_dir: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS) -> Photo:
    """The request's photo bytes as one checked ``Photo`` (``Photo.resolve``: stored under
    ``cache_dir/images`` by their sha256, then checked like every photo input). An ImageLoadError
    names the upload (``name``: the uploaded file, or the URL), never the server's stored file."""
    try:
        return Photo.resolve(data, cache_dir, limits)
    except ImageLoadError as exc:
        stored = re.escape(os.path.join(os.fspath(cache_dir), "images", "")) + r"[0-9a-f]{64}\.\w+"
        message = re.sub(stored, lambda _: name, exc.message)
        if message == exc.message:
            raise
        raise ImageLoadError(message, exc.hint, reason=exc.reason) from exc


def fetch_url(url: str, *, allow_private: bool, max_bytes: int, limits: MediaLimits = DEFAULT_LIMITS) -> bytes:
    """Download ``url`` with ``core.download`` (every redirect hop's address checked unless
    ``allow_private``, the connection pinned to the checked address, a total deadline), at most
    ``max_bytes``; a refused target is a 400, a failed download a 422."""
    if not is_url(url):
        raise ServiceError(
            422, "invalid_argument", f"url must be an http(s) URL, got {url[:100]!r}", "give an http:// or https:// URL"
        )
    policy = limits.model_copy(
        update={"allow_private_urls": allow_private, "max_image_bytes": min(max_bytes, limits.max_image_bytes)}
    )
    try:
        return download(url, policy)
    except ImageLoadError as exc:
        if exc.reason == "url_refused":
            raise ServiceError(
                400,
                "url_not_allowed",
                exc.message,
                "give a public URL, or upload the photo itself (the server's "
                "GEOAGENT_SERVICE_ALLOW_PRIVATE_URLS allows such targets)",
            ) from exc
        if exc.reason == "too_large":
            raise too_large(policy.max_image_bytes) from exc
        raise ServiceError(422, "url_failed", exc.message, exc.hint or "check the URL, or upload the photo itself") from exc


@dataclass
class ImageSource:
    """What a request gave for one photo: its bytes, or a URL to fetch (on a worker thread)."""

    data: bytes | None = None
    url: str | None = None
    name: str = "the uploaded image"

    def resolve(
        self, cache_dir: str | os.PathLike, *, allow_private: bool, max_bytes: int, limits: MediaLimits = DEFAULT_LIMITS
    ) -> Photo:
        """The photo, fetched when it is a URL, as one checked ``Photo`` (blocking)."""
        if self.url is None:
            if not self.data:
                raise ImageLoadError(
                    f"{self.name} is empty (0 bytes)", "send the photo's contents (curl -F image=@photo.jpg ...)"
                )
            return resolve_upload(self.data, self.name, cache_dir, limits)
        data = fetch_url(self.url, allow_private=allow_private, max_bytes=max_bytes, limits=limits)
        return resolve_upload(data, self.url, cache_dir, limits)


def parse_json(text: str | bytes, what: str = "the body", fix: str | None = None) -> Any:
    """JSON text -> its value; 400 ``bad_json`` for anything that is not valid JSON, of any shape:
    a syntax error, bytes that are not UTF-8, nesting too deep to parse, a number too long."""
    hint = {"fix": fix} if fix else {}
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise bad_json(f"{what} is nested too deeply to parse", **hint) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digits limit
        raise bad_json(f"{what}: {exc}"[:300], **hint) from exc


async def _json_body(request: Request) -> dict[str, Any]:
    body = parse_json(await request.body())
    if not isinstance(body, dict):
        raise ServiceError(422, "invalid_argument", "the JSON body must be an object", 'send e.g. {"url": "https://..."}')
    return body


async def read_request(
    request: Request, *, images: str = "one", json_only_ok: bool = False
) -> tuple[list[ImageSource], dict[str, Any]]:
    """The photos (``images``: "one" or "many" uploads) and the other fields of a request.

    ``json_only_ok``: a JSON body without ``url`` is fine (it carries other inputs, e.g. locations).
    """
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=MAX_IMAGES, max_fields=64)
        uploads = form.getlist(IMAGE_FIELD)
        if not uploads or not all(isinstance(u, UploadFile) for u in uploads):
            raise ServiceError(
                422,
                "missing_image",
                f"no file in the multipart field '{IMAGE_FIELD}'",
                f"send the photo as the file field '{IMAGE_FIELD}' (curl -F {IMAGE_FIELD}=@photo.jpg ...)",
            )
        if images == "one" and len(uploads) > 1:
            raise ServiceError(
                422,
                "invalid_argument",
                f"{len(uploads)} files in '{IMAGE_FIELD}', this endpoint takes one",
                "send one photo per request",
            )
        sources = []
        for upload in uploads:
            kind = (upload.content_type or "application/octet-stream").lower()
            if not kind.startswith(_UPLOAD_TYPES):
                raise ServiceError(
                    415,
                    "unsupported_media_type",
                    f"the file '{upload.filename}' is sent as {kind}, not an image",
                    "send a JPEG, PNG or WebP file with an image/* content type (or application/octet-stream)",
                )
            sources.append(ImageSource(data=await upload.read(), name=f"the uploaded file '{upload.filename or IMAGE_FIELD}'"))
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == IMAGE_FIELD:
                continue
            if isinstance(value, UploadFile):
                raise ServiceError(
                    422, "invalid_argument", f"unexpected file in field '{key}'", f"only '{IMAGE_FIELD}' takes files"
                )
            if key in JSON_FORM_FIELDS:
                value = parse_json(
                    value, f"the field '{key}'", f"send '{key}' as JSON text, e.g. -F '{key}={{\"country_code\": \"FR\"}}'"
                )
            fields[key] = value
        return sources, fields
    if ctype == "application/json":
        body = await _json_body(request)
        url = body.pop("url", None)
        if url is None:
            if json_only_ok:
                return [], body
            raise ServiceError(
                422,
                "missing_image",
                "the JSON body has no 'url'",
                f'send {{"url": "https://..."}}, or upload the photo as multipart field \'{IMAGE_FIELD}\'',
            )
        if not isinstance(url, str):
            raise ServiceError(422, "invalid_argument", "'url' must be a string", "give an http(s) URL")
        return [ImageSource(url=url)], body
    raise ServiceError(
        415,
        "unsupported_media_type",
        f"the request's content type is {ctype or 'missing'}",
        f"send multipart/form-data with the photo in field '{IMAGE_FIELD}', or application/json {{\"url\": ...}}",
    )
