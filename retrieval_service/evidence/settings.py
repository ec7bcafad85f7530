"""The evidence section of the settings: scene segmentation and reverse geocoding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from retrieval_service.core.media_settings import MediaSettings


class EvidenceSettings(MediaSettings):
    """The back ends of the evidence tools."""

    segmenter: Literal["auto", "tflite", "segformer", "none"] = "auto"
    segmenter_model: str | None = Field(default=None, description="TFLite model path (tflite) or hub id (segformer).")
    segmenter_labels: str | None = Field(default=None, description="Labels file for a TFLite model.")
    nominatim: bool = Field(default=False, description="Also ask OpenStreetMap Nominatim (online, 1 request/s).")
    nominatim_user_agent: str = "geoagent (https://pypi.org/project/geoagent)"
