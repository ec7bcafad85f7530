"""The service's limits on a request before any work: its body size (an ASGI middleware) and the
API key. How many requests are worked on at once is ``admission``'s."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import Request

from retrieval_service.service.errors import ServiceError, error_payload


def too_large(limit: int) -> ServiceError:
    return ServiceError(
        413,
        "too_large",
        f"the request body is larger than {limit / 2**20:.1f} MiB",
        "send a smaller photo (downscale it: a few megapixels are plenty), or raise GEOAGENT_SERVICE_MAX_UPLOAD_MB",
    )


class BodyLimit:
    """Refuse bodies over ``limit`` bytes: at once from Content-Length, else while they stream in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            body = json.dumps(error_payload(too_large(self.limit))).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return None
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large(self.limit)
            return message

        return await self.app(scope, counted, send)


def check_api_key(request: Request, key: str | None) -> None:
    """Raise 401 unless the request carries ``key`` (no key configured: everything passes)."""
    if not key:
        return
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = given or auth[7:].strip()
    if not given or not secrets.compare_digest(given.encode(), key.encode()):
        raise ServiceError(
            401,
            "unauthorized",
            "a valid API key is required",
            "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (GEOAGENT_SERVICE_API_KEY on the server)",
            headers={"WWW-Authenticate": "Bearer"},
        )
