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


DUALGEO_SOURCE = "DualGeo's public code, as read in issue #18 (not re-checked here)"
TRANSGEOCLIP_SOURCE = "TransGeoCLIP (Cui et al., 2026, arXiv 2606.08918), its abstract"

PRESETS: dict[str, Preset] = {
    "dualgeo": Preset(
        name="dualgeo",
        paper="DualGeo: image + segmentation dual view, contrastive image<->GPS, geographic re-rank",
        model={
            "gps_encoder": Value("rff", f"summed multi-scale RFF capsules: {DUALGEO_SOURCE}"),
            "projection": Value("mercator", f"Web Mercator input to the GPS encoder: {DUALGEO_SOURCE}"),
            "init_temperature": Value(round(1 / math.exp(4.0), 6), f"initial logit scale ~54 (e^4): {DUALGEO_SOURCE}"),
            "use_segmentation": Value(True, "the segmentation view (DualGeo's second view)"),
            "database_vector": Value("fused+clip", "the fused vector beside the raw CLIP vector in the image database"),
        },
        train={"lr": Value(4e-5, f"peak learning rate: {DUALGEO_SOURCE}")},
        departures=(
            "DualGeo encodes a segmentation image with a ResNet-18; geoagent encodes the segmenter's class map "
            "(32 x 32 cells) with its own token encoder",
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
