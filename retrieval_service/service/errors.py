"""Structured errors: ``{"error": {"code", "message", "fix"}}`` with 4xx for the client's mistakes
(and the fix) and 5xx only for the server's own failures."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrieval_service.core.cancel import Cancelled
from retrieval_service.core.errors import (
    ConfigError,
    DatasetError,
    GeoAgentError,
    ImageLoadError,
    ModelMismatchError,
    StoreError,
    WeightsNotFoundError,
)

logger = logging.getLogger(__name__)


class ServiceError(GeoAgentError):
    """An error with its HTTP status and a stable machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, hint: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code
        self.headers = headers or {}


class ErrorDetail(BaseModel):
    code: str
    message: str
    fix: str | None = None


class ErrorBody(BaseModel):
    """What every error response holds."""

    error: ErrorDetail


# GeoAgentError subclasses raised by the retriever or the agent: (status, code)
_STATUS: list[tuple[type[GeoAgentError], int, str]] = [
    (Cancelled, 503, "cancelled"),  # stopped by its deadline or the server stopping
    (ImageLoadError, 422, "image_invalid"),
    (DatasetError, 422, "invalid_argument"),
    (StoreError, 503, "store_unavailable"),
    (WeightsNotFoundError, 503, "weights_missing"),
    (ModelMismatchError, 500, "model_mismatch"),
    (ConfigError, 500, "server_config"),
]


def as_service_error(exc: GeoAgentError) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return ServiceError(status, code, exc.message, exc.hint)
    return ServiceError(500, "internal", exc.message, exc.hint)


def error_payload(err: ServiceError) -> dict[str, Any]:
    return ErrorBody(error=ErrorDetail(code=err.code, message=err.message, fix=err.hint)).model_dump()


def error_response(err: ServiceError) -> JSONResponse:
    if err.status >= 500:
        logger.warning("%s %s: %s", err.status, err.code, err.message)
    return JSONResponse(error_payload(err), status_code=err.status, headers=err.headers)


def bad_json(detail: str, fix: str = 'send a JSON object, e.g. {"url": "https://..."}') -> ServiceError:
    """400: a body (or a JSON form field) that is not valid JSON, whatever its shape."""
    return ServiceError(400, "bad_json", f"not valid JSON: {detail}", fix)


def invalid_arguments(exc: ValidationError | RequestValidationError, what: str = "request") -> ServiceError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()) if p not in ('body',)) or what}: "
        f"{str(err.get('msg', 'invalid')).removeprefix('Value error, ')}"
        for err in exc.errors()
    )
    return ServiceError(
        422, "invalid_argument", f"invalid {what}: {problems}", "correct the named fields (see /docs for the schema)"
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GeoAgentError)
    async def _geoagent(request: Request, exc: GeoAgentError) -> JSONResponse:
        return error_response(as_service_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        broken = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if broken:
            return error_response(bad_json(str((broken[0].get("ctx") or {}).get("error") or "a decode error")))
        return error_response(invalid_arguments(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, GeoAgentError):  # raised while FastAPI read the body (e.g. too large)
            return error_response(as_service_error(exc.__cause__))
        if exc.status_code == 400:  # FastAPI could not parse the body (too deeply nested, not UTF-8)
            cause = exc.__cause__
            return error_response(bad_json(f"{type(cause).__name__}: {cause}"[:200] if cause else str(exc.detail)))
        fixes = {404: "see /docs for the endpoints", 405: "see /docs for the methods each endpoint takes"}
        return error_response(ServiceError(exc.status_code, "http_error", str(exc.detail), fixes.get(exc.status_code)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            ServiceError(
                500, "internal", f"internal error: {type(exc).__name__}", "retry; if it persists, report it with the server log"
            )
        )
