"""Retrieval back ends, one per encoder family (``base.RetrievalBackend``): ``geoclip.GeoClipBackend``
(open_clip + GeoCLIP's heads and gallery, the default) and ``fusion.FusionBackend`` (a fusion
checkpoint and its own collections). ``make_backend(settings)`` picks one from ``settings.encoder``."""

from __future__ import annotations

from retrieval_service.retrieval.backends.base import GpsHead, ImageEncoderLike, RetrievalBackend
from retrieval_service.retrieval.settings import RetrievalSettings

__all__ = ["GpsHead", "ImageEncoderLike", "RetrievalBackend", "make_backend"]


def make_backend(settings: RetrievalSettings) -> RetrievalBackend:
    """The back end of the configured encoder: ``"geoclip"`` or ``"fusion:PATH"`` (the settings
    validate the value). Loads no model."""
    if settings.fusion_checkpoint is not None:
        from retrieval_service.retrieval.backends.fusion import FusionBackend

        return FusionBackend(settings)
    from retrieval_service.retrieval.backends.geoclip import GeoClipBackend

    return GeoClipBackend(settings)
