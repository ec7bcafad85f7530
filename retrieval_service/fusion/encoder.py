"""A trained fusion checkpoint as the retriever's encoder (``GEOAGENT_ENCODER=fusion:PATH``).

One object plays both parts the ``Retriever`` needs: the image encoder (photo -> image-database
vector: the fused embedding, or fused beside the raw CLIP vector as in DualGeo) and the GPS heads
(the photo's vector in the image/GPS space, and coordinates through the model's own GPS encoder).
The database vector starts with the fused embedding, so the GPS-space vector of a photo is its
first ``embed_dim`` entries, re-normalised: search and verify encode a photo once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from retrieval_service.core.errors import ModelMismatchError

logger = logging.getLogger(__name__)


class FusionEncoder:
    """Photo -> database vector and GPS-space vector; coordinates -> GPS-space vectors."""

    def __init__(self, path: str | Path, settings: object, device: str = "auto", batch_size: int = 32) -> None:
        from retrieval_service.fusion import checkpoint as ckpt
        from retrieval_service.fusion.classmaps import class_mapper_for
        from retrieval_service.fusion.tokens import TokenEncoder
        from retrieval_service.retrieval.image_encoder import resolve_device

        self.path = ckpt.resolve_model_path(path)
        self.fingerprint = ckpt.fingerprint(self.path)
        self.device = resolve_device(device)
        self.model, self.meta = ckpt.load_model(self.path, self.device)
        spec = self.model.spec
        self.tokens = TokenEncoder(spec.image_model, spec.image_pretrained, device, batch_size, spec.token_grid)
        if (self.tokens.dim, self.tokens.dim) != (spec.token_dim, spec.pooled_dim):
            raise ModelMismatchError(
                f"{self.path} was trained on {spec.pooled_dim}-d features of {spec.image_model}, "
                f"but {spec.image_model}/{spec.image_pretrained} here gives {self.tokens.dim}-d",
                "install the image weights the checkpoint was trained with",
            )
        self.mapper = class_mapper_for(spec, settings) if self.model.seg_encoder is not None else None
        self.dim = self.model.database_dim
        self.gps_dim = self.model.config.embed_dim
        self.model_name = f"fusion:{self.path.name}@{self.fingerprint}"
        self._text: Any = None  # the CLIP text tower, loaded on the first description

    @property
    def has_text(self) -> bool:
        """Whether the checkpoint has a text branch (trained with --text)."""
        return self.model.text_head is not None

    @property
    def text_scale(self) -> float:
        """The checkpoint's learned fused<->text inverse temperature."""
        with torch.no_grad():
            return float(self.model.scales()["text"])

    def encode_descriptions(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, gps_dim) unit vectors of place descriptions in the shared space: the frozen CLIP text
        tower the checkpoint was trained with (loaded on first use), then the checkpoint's text head."""
        if self._text is None:
            from retrieval_service.fusion.text import TextEncoder

            spec = self.model.spec
            self._text = TextEncoder(spec.image_model, spec.image_pretrained, str(self.device))
        feats = self._text.encode(list(prompts))
        with torch.inference_mode():
            return self.model.encode_text(torch.from_numpy(feats).to(self.device)).float().cpu().numpy()

    @property
    def scale(self) -> float:
        """The checkpoint's learned fused<->GPS inverse temperature (its softmax over the gallery)."""
        with torch.no_grad():
            return float(self.model.scales()["fused"])

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) image-database vectors, unit norm, float32."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        tokens, pooled = self.tokens.encode(list(images))
        classmap = None
        if self.mapper is not None:
            classmap = torch.from_numpy(np.stack([self.mapper(img) for img in images])).to(self.device)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(tokens).to(self.device), torch.from_numpy(pooled).to(self.device), classmap)
            return self.model.database_vector(out).float().cpu().numpy()

    def embed_clip_features(self, raw: np.ndarray) -> np.ndarray:
        """Database vectors -> the photos' GPS-space vectors (the fused part, unit norm)."""
        fused = np.asarray(raw, np.float32)[:, : self.gps_dim]
        return (fused / np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def encode_locations(self, coords: np.ndarray, batch: int = 8192) -> np.ndarray:
        """(n, 2) lat/lon -> (n, gps_dim), unit norm, through the model's own GPS encoder."""
        coords = np.array(coords, np.float32).reshape(-1, 2)  # a writable copy for torch
        out = []
        with torch.inference_mode():
            for s in range(0, len(coords), batch):
                out.append(self.model.encode_gps(torch.from_numpy(coords[s : s + batch]).to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.gps_dim), np.float32)
