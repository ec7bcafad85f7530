"""The frozen image tower: a photo -> pooled patch tokens and the pooled CLIP vector.

Built on the project's ``ImageEncoder`` (same model names, weights resolution, offline errors and
preprocessing), with open_clip's ``output_tokens`` switched on. The patch tokens go through the
tower's final LayerNorm and its output projection (so they live in the pooled vector's space, as
in MaskCLIP) and are average-pooled to a ``token_grid`` x ``token_grid`` grid: 16 tokens (grid 4)
keep the layout of the scene at a fraction of the disk a full ViT-L/14 grid (256 tokens) needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from retrieval_service.core.errors import ModelMismatchError

logger = logging.getLogger(__name__)


class TokenEncoder:
    """Batched (tokens, pooled) of a frozen open_clip ViT, under ``torch.inference_mode``."""

    def __init__(
        self, image_model: str, image_pretrained: str, device: str = "auto", batch_size: int = 32, token_grid: int = 4
    ) -> None:
        from retrieval_service.retrieval.image_encoder import ImageEncoder

        self._clip = ImageEncoder(image_model, image_pretrained, device, batch_size)
        self.device = self._clip.device
        self.batch_size = batch_size
        self.token_grid = token_grid
        self.image_model = image_model
        self.image_pretrained = image_pretrained
        self.visual = self._clip.model.visual
        if not hasattr(self.visual, "output_tokens") or not hasattr(self.visual, "patch_size"):
            raise ModelMismatchError(
                f"the fusion model needs patch tokens, which {self._clip.model_name}'s image tower does not give",
                "use an open_clip ViT (e.g. ViT-L-14, ViT-B-32) as the image model",
            )
        self.visual.output_tokens = True
        self.visual.requires_grad_(False)
        self.preprocess = self._clip.preprocess
        self.dim = self._clip.dim
        # the text tower is never used here: free it
        for name in ("transformer", "token_embedding", "ln_final"):
            if hasattr(self._clip.model, name):
                setattr(self._clip.model, name, None)

    @property
    def model_name(self) -> str:
        return self._clip.model_name

    def encode_batch(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed (n, 3, H, W) on any device -> tokens (n, grid^2, dim), pooled (n, dim), float32."""
        with torch.inference_mode():
            pixels = pixels.to(self.device)
            pooled, tokens = self.visual(pixels)
            proj = getattr(self.visual, "proj", None)
            if proj is not None:
                tokens = tokens @ proj
            n, count, width = tokens.shape
            side = round(count**0.5)
            if side * side != count:
                raise ModelMismatchError(
                    f"{count} patch tokens do not form a square grid", "use square input images (the default preprocessing)"
                )
            grid = tokens.transpose(1, 2).reshape(n, width, side, side).float()
            pooled_tokens = F.adaptive_avg_pool2d(grid, self.token_grid).flatten(2).transpose(1, 2)
            return pooled_tokens.contiguous(), pooled.float()

    def encode(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """PIL images -> tokens (n, grid^2, dim) and pooled (n, dim), float32 numpy."""
        toks: list[np.ndarray] = []
        pools: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(img) for img in images[start : start + self.batch_size]])
            t, p = self.encode_batch(batch)
            toks.append(t.cpu().numpy())
            pools.append(p.cpu().numpy())
        if not toks:
            return np.zeros((0, self.token_grid**2, self.dim), np.float32), np.zeros((0, self.dim), np.float32)
        return np.concatenate(toks), np.concatenate(pools)
