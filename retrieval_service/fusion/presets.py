"""Published configurations of the fusion model: ``geoagent train fusion --preset dualgeo`` or
``--preset transgeoclip`` sets each value below (an option given on the command line still wins).

Every value says where it comes from. What a paper does that geoagent does not implement is listed
in ``departures``, never silently approximated. The table in docs/deployment.md is this module.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from retrieval_service.core.errors import ConfigError


class Value(NamedTuple):
    value: Any
    source: str


class Preset(NamedTuple):
    name: str
    paper: str
    model: dict[str, Value]  # FusionConfig fields
    train: dict[str, Value]  # TrainConfig fields
    departures: tuple[str, ...]

    def model_values(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.model.items()}

    def train_values(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.train.items()}


DUALGEO_MODEL = "DualGeo's public code, utils/DualView_seg.py"
DUALGEO_TRAIN = "DualGeo's public code, DualGeo_train.py"
TRANSGEOCLIP_SOURCE = "TransGeoCLIP (Cui et al., 2026, arXiv 2606.08918), its abstract"

PRESETS: dict[str, Preset] = {
    "dualgeo": Preset(
        name="dualgeo",
        paper="DualGeo: image + segmentation dual view, contrastive image<->GPS, geographic re-rank",
        model={
            "gps_encoder": Value("rff", f"summed RFF capsules (CustomLocationEncoder): {DUALGEO_MODEL}"),
            "sigmas": Value((2.0**0, 2.0**4, 2.0**8), f"RFF scales 2^0, 2^4, 2^8: {DUALGEO_MODEL}"),
            "projection": Value("mercator", f"EPSG:3857 (Web Mercator) input to the GPS encoder: {DUALGEO_MODEL}"),
            "init_temperature": Value(
                round(1 / math.exp(3.99), 6), f"logit scale initialised to 3.99 (e^3.99 ~ 54): {DUALGEO_MODEL}"
            ),
            "use_segmentation": Value(True, "the segmentation view (DualGeo's second view)"),
            "database_vector": Value("fused+clip", "the fused vector beside the raw CLIP vector in the image database"),
        },
        train={
            "lr": Value(4e-5, f"AdamW learning rate: {DUALGEO_TRAIN}"),
            "weight_decay": Value(1e-6, f"AdamW weight decay: {DUALGEO_TRAIN}"),
            "batch_size": Value(256, f"DataLoader batch size (per process): {DUALGEO_TRAIN}"),
            "epochs": Value(10, f"10 epochs: {DUALGEO_TRAIN}"),
        },
        departures=(
            "DualGeo encodes a one-channel segmentation image with a ResNet-18; geoagent encodes the segmenter's "
            "class map (32 x 32 cells) with its own token encoder",
            "DualGeo decays the learning rate by 0.87 every 2 epochs (StepLR) with no warm-up; geoagent keeps its "
            "linear warm-up and cosine decay",
            "DualGeo's fusion attends across the batch; geoagent's cross-attention stays within one photo",
        ),
    ),
    "transgeoclip": Preset(
        name="transgeoclip",
        paper="TransGeoCLIP: a Transformer with location attention encodes GPS; a joint image-text-GPS embedding",
        model={
            "gps_encoder": Value(
                "location_attention", f"the Transformer encoder with location attention over GPS: {TRANSGEOCLIP_SOURCE}"
            ),
            "use_text": Value(
                True, f"the joint image-text-GPS embedding (fused<->text and text<->GPS losses): {TRANSGEOCLIP_SOURCE}"
            ),
            "projection": Value("equal_earth", "geoagent's default (GeoCLIP's); the paper's choice is not verified here"),
        },
        train={},
        departures=(
            "learning rate, batch size, temperatures, depth and widths keep geoagent's defaults: the paper's values "
            "are not verified here",
            "the location attention is geoagent's reading of the paper (a location token attending over one token per "
            "RFF scale, residual on the RFF sum)",
        ),
    ),
}


def preset(name: str | None) -> Preset | None:
    """The preset called ``name`` (None for none); ConfigError naming the known ones."""
    if name is None:
        return None
    found = PRESETS.get(name.strip().lower())
    if found is None:
        raise ConfigError(f"unknown preset {name!r}", f"use one of: {', '.join(PRESETS)}")
    return found


def table_rows() -> list[tuple[str, str, str, str]]:
    """(preset, setting, value, source) for every value of every preset (the docs' table)."""
    rows = []
    for p in PRESETS.values():
        for key, v in {**p.model, **p.train}.items():
            rows.append((p.name, key, repr(v.value), v.source))
    return rows
