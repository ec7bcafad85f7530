"""A tiny random open_clip image model (768-d output, the width GeoCLIP's head takes).

With ``GEOAGENT_IMAGE_PRETRAINED=none`` it runs the whole pipeline without downloading weights:
for plumbing tests and speed benchmarks of everything but the real encoder. Its answers mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_CONFIG = {
    "embed_dim": 768,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
TINY_CLIP_NAME = "geoagent-tiny-vit"


def write_tiny_config(folder: Path) -> Path:
    """Write the tiny model's open_clip config JSON into ``folder``; its path is a valid
    ``GEOAGENT_IMAGE_MODEL``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_CLIP_NAME}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    return path
