"""The optional text branch's frozen side: CLIP's text tower on TransGeoCLIP's place prompt
("A photo taken in {city}, {region}, {country}."), computed once at precompute time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class TextEncoder:
    """Pooled CLIP text features of prompts, float32 numpy (the tower is frozen)."""

    def __init__(self, image_model: str, image_pretrained: str, device: str = "auto", batch_size: int = 256) -> None:
        import open_clip

        from retrieval_service.retrieval.image_encoder import ImageEncoder

        clip = ImageEncoder(image_model, image_pretrained, device, batch_size)
        self.model = clip.model
        self.model.visual = None  # only the text tower is used
        self.device = clip.device
        self.batch_size = batch_size
        self.tokenizer = open_clip.get_tokenizer(clip.model_name)
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                tokens = self.tokenizer(list(prompts[start : start + self.batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
