"""The media section of the settings: what a photo may be (bytes, pixels, shape) and how URLs are
fetched. ``MediaLimits`` is the plain model the media functions take (defaults without reading the
environment); ``MediaSettings`` is the same fields as a settings section (``GEOAGENT_*`` variables),
inherited by the retrieval and evidence sections so that every ``Settings`` object is one."""

from __future__ import annotations

from pydantic import BaseModel, Field

from retrieval_service.core.settings import CoreSettings

PILLOW_DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's own decompression-bomb threshold (``PIL.Image.MAX_IMAGE_PIXELS``); Pillow refuses outright
at twice this, before geoagent sees the image, so the pixel limit cannot go above that."""


class MediaLimits(BaseModel):
    """Limits every photo is checked against before any model sees it."""

    max_image_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        le=2 * 1024**3,
        description="Largest photo file (or download, or bytes input) accepted, in bytes.",
    )
    max_image_pixels: int = Field(
        default=PILLOW_DEFAULT_MAX_PIXELS,
        ge=10_000,
        le=2 * PILLOW_DEFAULT_MAX_PIXELS,
        description="Largest width x height accepted (decompression-bomb limit); checked on the header, before decoding.",
    )
    min_image_side: int = Field(default=16, ge=1, le=4096, description="Smallest width or height accepted, in pixels.")
    max_aspect_ratio: float = Field(
        default=20.0,
        ge=1.0,
        le=1000.0,
        description="Largest long side / short side accepted (thinner strips are refused: every model would upsample the short side).",
    )
    decode_max_side: int = Field(
        default=2048,
        ge=256,
        le=65_536,
        description=(
            "Photos whose long side is at least twice this are decoded reduced, never below it: JPEGs at 1/2, 1/4 or 1/8 "
            "scale, other formats by a whole factor right after decoding."
        ),
    )
    decode_pixel_budget: int = Field(
        default=100_000_000,
        ge=1_000_000,
        le=10_000_000_000,
        description=(
            "Pixels decoded at once across the process (every request in flight); a decode waits while others hold the "
            "budget, one larger than it runs alone. Bounds the memory huge non-JPEG photos take together."
        ),
    )
    url_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="Total deadline for downloading a photo URL, redirects included."
    )
    url_max_redirects: int = Field(default=5, ge=0, le=30, description="Redirects followed when downloading a photo URL.")
    allow_private_urls: bool = Field(
        default=False,
        description="Allow photo URLs on loopback, private, link-local, multicast and reserved addresses (off: refused).",
    )


DEFAULT_LIMITS = MediaLimits()


class MediaSettings(CoreSettings, MediaLimits):
    """The media limits as a settings section (``GEOAGENT_MAX_IMAGE_BYTES``, ``GEOAGENT_ALLOW_PRIVATE_URLS``...)."""
