"""The evidence section of the settings: scene segmentation, the geographic re-rank and reverse geocoding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from retrieval_service.core.media_settings import MediaSettings


class EvidenceSettings(MediaSettings):
    """The back ends of the evidence tools."""

    segmenter: Literal["auto", "tflite", "segformer", "none"] = Field(
        default="auto",
        description=(
            "'auto': segmenter_model when it is a .tflite file, else SegFormer when its weights are cached, else the shipped "
            "Cityscapes TFLite model (2 MB, Apache-2.0; works offline); "
            "'tflite' (the shipped model, or segmenter_model), 'segformer' (pip install -e '.[segformer]'), 'none'."
        ),
    )
    segmenter_model: str | None = Field(default=None, description="TFLite model path (tflite) or hub id (segformer).")
    segmenter_labels: str | None = Field(default=None, description="Labels file for a TFLite model.")
    cluster_weighting: Literal["none", "score"] = Field(
        default="none",
        description=(
            "Geographic re-rank of the retrieval candidates (cluster_candidates, mode rerank): 'none' = DualGeo's unweighted "
            "DBSCAN (main cluster = most members; answer = the real candidate nearest its mean); 'score' = each candidate "
            "weighted by its score (clusters by weight mass; answer = the weighted centre)."
        ),
    )
    nominatim: bool = Field(
        default=False, description="Also ask OpenStreetMap Nominatim (online, 1 request/s; answers cached, failures not)."
    )
    nominatim_user_agent: str = Field(
        default="geoagent (https://pypi.org/project/geoagent)",
        description="User agent sent to Nominatim (its usage policy asks for one that names the application).",
    )
