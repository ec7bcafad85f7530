"""``RetrievalClient``: the ``Retriever``'s interface over HTTP (a ``geoagent serve`` elsewhere).

Set ``GEOAGENT_RETRIEVAL_URL`` and the tools use it instead of an in-process ``Retriever``, with
no other change: the same methods, the same result types, the same error classes (the server's
structured errors come back as ``ImageLoadError``, ``StoreError``...). It takes what the Retriever
takes: a resolved ``Photo`` (its file is uploaded as it is, EXIF intact: the photo was resolved,
and a URL downloaded, once, by the caller) or a decoded PIL image (uploaded as PNG). Connection
failures and "busy" answers are retried with backoff.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from retrieval_service.core.errors import (
    ConfigError,
    DatasetError,
    GeoAgentError,
    ImageLoadError,
    ModelMismatchError,
    StoreError,
    WeightsNotFoundError,
)
from retrieval_service.core.photo import Photo
from retrieval_service.core.types import GeoFilter, RetrievalResult
from retrieval_service.retrieval.settings import RetrievalSettings

_ERRORS: dict[str, type[GeoAgentError]] = {
    **dict.fromkeys(
        ("image_invalid", "missing_image", "unsupported_media_type", "too_large", "url_failed", "url_not_allowed"), ImageLoadError
    ),
    **dict.fromkeys(("invalid_argument", "bad_json"), DatasetError),
    "weights_missing": WeightsNotFoundError,
    "model_mismatch": ModelMismatchError,
    "server_config": ConfigError,
    "unauthorized": ConfigError,
}


RetrieverImage = Photo | Image.Image
"""What the client takes, as the Retriever does: a resolved ``Photo`` or a decoded PIL image."""


class _Busy(Exception):
    """A 503 "busy" answer: worth another try."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_Busy, httpx.TransportError))


class RetrievalClient:
    """A remote ``Retriever`` (search, verify, embed_images, gps_embed_images, encode_locations,
    has_database, warm_up, info, close)."""

    def __init__(self, settings: RetrievalSettings, *, http: httpx.Client | None = None) -> None:
        if not settings.retrieval_url:
            raise ConfigError("no retrieval service URL is set", "set GEOAGENT_RETRIEVAL_URL, e.g. http://localhost:8000")
        self.settings = settings
        self.url = settings.retrieval_url.rstrip("/")
        headers = {"Authorization": f"Bearer {settings.retrieval_api_key}"} if settings.retrieval_api_key else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.url, timeout=settings.retrieval_timeout_s, headers=headers)

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> RetrievalClient:
        return cls(settings)

    # ------------------------------------------------------------------ transport
    @retry(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=4),
        reraise=True,
    )
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code == 503 and self._code(response) == "busy":
            raise _Busy()
        return response

    @staticmethod
    def _code(response: httpx.Response) -> str:
        try:
            return str(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return ""

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._send(method, path, **kwargs)
        except (httpx.TransportError, _Busy) as exc:
            raise StoreError(
                f"the retrieval service at {self.url} did not answer ({type(exc).__name__}: {exc})",
                "start it (geoagent serve) or fix GEOAGENT_RETRIEVAL_URL; unset it to retrieve in-process",
            ) from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message, fix = str(error["code"]), str(error["message"]), error.get("fix")
            except (ValueError, KeyError, TypeError):
                code, message, fix = "", f"HTTP {response.status_code}: {response.text[:200]}", None
            kind = _ERRORS.get(code, StoreError)
            if code == "unauthorized":
                fix = "set GEOAGENT_RETRIEVAL_API_KEY to the service's key"
            raise kind(f"retrieval service: {message}", fix or "see the retrieval service's log")
        return response.json()

    @staticmethod
    def _file(image: RetrieverImage) -> tuple[str, bytes, str]:
        if isinstance(image, Photo):
            try:
                return Path(image.path).name, image.read_bytes(), "application/octet-stream"
            except OSError as exc:
                raise ImageLoadError(f"cannot read {image.path}: {exc}", "check the file permissions") from exc
        if isinstance(image, Image.Image):
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="PNG")
            return "image.png", buf.getvalue(), "image/png"
        raise TypeError(
            f"the RetrievalClient takes a Photo or a decoded PIL image, not {type(image).__name__}: "
            "resolve photo inputs once with Photo.resolve(src, settings.cache_dir, settings)"
        )

    def _post_photo(self, path: str, image: RetrieverImage, fields: dict[str, Any]) -> Any:
        data = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items()}
        return self._request("POST", path, files={"image": self._file(image)}, data=data)

    # ------------------------------------------------------------------ the Retriever's interface
    def search(
        self,
        image: RetrieverImage,
        *,
        k_gallery: int | None = None,
        k_database: int | None = None,
        geo_filter: GeoFilter | None = None,
        dissimilar: int = 0,
    ) -> RetrievalResult:
        fields: dict[str, Any] = {"dissimilar": dissimilar}  # k not given: the service's top_k setting
        fields |= {name: k for name, k in (("k_gallery", k_gallery), ("k_database", k_database)) if k is not None}
        if geo_filter is not None:
            fields["filter"] = geo_filter.model_dump(exclude_none=True)
        return RetrievalResult.model_validate(self._post_photo("/v1/search", image, fields))

    def verify(self, image: RetrieverImage, coords: Sequence[tuple[float, float]]) -> list[float]:
        if not isinstance(image, (Photo, Image.Image)):
            self._file(image)  # refused as by the Retriever, even with no coordinates
        if not coords:
            return []
        locations = [{"lat": float(lat), "lon": float(lon)} for lat, lon in coords]
        return [float(s) for s in self._post_photo("/v1/verify", image, {"locations": locations})["scores"]]

    def _embed(self, images: Sequence[RetrieverImage], space: str) -> np.ndarray:
        if not images:
            return np.zeros((0, 0), dtype=np.float32)
        body = self._request("POST", "/v1/embed", files=[("image", self._file(i)) for i in images], data={"space": space})
        return np.asarray(body["vectors"], dtype=np.float32).reshape(len(images), body["dim"])

    def embed_images(self, images: Sequence[RetrieverImage]) -> np.ndarray:
        """(n, D) L2-normalised CLIP features."""
        return self._embed(list(images), "clip")

    def gps_embed_images(self, images: Sequence[RetrieverImage]) -> np.ndarray:
        """(n, 512) GeoCLIP image-head embeddings."""
        return self._embed(list(images), "gps")

    def encode_locations(self, coords: Sequence[tuple[float, float]]) -> np.ndarray:
        """(n, 512) location embeddings."""
        arr = np.asarray(list(coords), dtype=np.float64).reshape(-1, 2)
        if len(arr) and (np.abs(arr[:, 0]).max() > 90 or np.abs(arr[:, 1]).max() > 180 or not np.isfinite(arr).all()):
            raise DatasetError("coordinates out of range", "give (lat, lon) pairs with -90 <= lat <= 90 and -180 <= lon <= 180")
        if not len(arr):
            return np.zeros((0, 512), dtype=np.float32)
        body = self._request("POST", "/v1/embed", json={"locations": [{"lat": float(a), "lon": float(b)} for a, b in arr]})
        return np.asarray(body["vectors"], dtype=np.float32)

    def info(self) -> dict[str, Any]:
        """The service's collections, models and device, and its URL."""
        return {**self._request("GET", "/v1/collections"), "retrieval_url": self.url}

    def has_database(self) -> bool:
        name = self.settings.database_collection
        return bool((self.info()["collections"].get(name) or {}).get("points"))

    def warm_up(self) -> None:
        """Wait (up to the request timeout) until the service has its models and gallery loaded;
        raise its reason when it cannot load them."""
        deadline = time.monotonic() + self.settings.retrieval_timeout_s
        while True:
            try:
                response = self._send("GET", "/readyz")
            except (httpx.TransportError, _Busy) as exc:
                raise StoreError(
                    f"the retrieval service at {self.url} did not answer ({type(exc).__name__})",
                    "start it (geoagent serve) or fix GEOAGENT_RETRIEVAL_URL",
                ) from exc
            body = response.json()
            if response.status_code == 200 and body.get("ready"):
                return
            if body.get("fix") or time.monotonic() > deadline:
                raise StoreError(f"the retrieval service is not ready: {body.get('detail')}", body.get("fix") or "wait and retry")
            time.sleep(0.5)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
