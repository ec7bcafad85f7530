"""Errors raised by geoagent: each names the problem and the fix."""

from __future__ import annotations


class GeoAgentError(Exception):
    """Base class: a user-facing error with a message and a hint on how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  fix: {hint}" if hint else message)


class ConfigError(GeoAgentError):
    """Invalid or inconsistent settings."""


class ImageLoadError(GeoAgentError):
    """An image could not be read (missing, not an image, truncated, unreachable URL).

    ``reason`` tells callers that map errors (the HTTP service) the cases they answer differently:
    ``"url_refused"`` (the URL policy refused the address) and ``"too_large"`` (over the byte limit).
    """

    def __init__(self, message: str, hint: str | None = None, *, reason: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


class WeightsNotFoundError(GeoAgentError):
    """Model weights are missing locally and could not be downloaded."""


class ModelMismatchError(GeoAgentError):
    """Two models that must fit together do not (e.g. a backbone width the GeoCLIP head cannot take)."""


class DatasetError(GeoAgentError):
    """A CSV or dataset folder is unusable (empty, missing columns, bad coordinates)."""


class StoreError(GeoAgentError):
    """The vector store is unreachable or a collection is missing/inconsistent."""


class NoAnswerError(GeoAgentError):
    """No evidence for any location (no EXIF GPS, no retrieval candidate, no LMM answer): a failed
    photo, never a placeholder answer. ``trace`` holds the steps that were tried."""

    def __init__(self, message: str, hint: str | None = None, *, trace: list | None = None) -> None:
        super().__init__(message, hint)
        self.trace = list(trace or [])
