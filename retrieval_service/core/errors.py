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
    """An image could not be read (missing, not an image, truncated, unreachable URL)."""


class WeightsNotFoundError(GeoAgentError):
    """Model weights are missing locally and could not be downloaded."""


class ModelMismatchError(GeoAgentError):
    """Two models that must fit together do not (e.g. a backbone width the GeoCLIP head cannot take)."""


class DatasetError(GeoAgentError):
    """A CSV or dataset folder is unusable (empty, missing columns, bad coordinates)."""


class StoreError(GeoAgentError):
    """The vector store is unreachable or a collection is missing/inconsistent."""
