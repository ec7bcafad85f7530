"""The CLIP image encoder on open_clip.

``image_model`` is an open_clip model name (``ViT-L-14``) or the path of an open_clip model config
JSON (registered with ``open_clip.add_model_config``; its file stem becomes the model name).
``image_pretrained`` is an open_clip tag (``openai``), a local checkpoint path, or ``none``
(random weights with a fixed seed, so that two processes build identical models; plumbing only).

Preprocessing: for ``ViT-L-14``/``openai`` open_clip's eval transform is Resize(224, shortest side,
bicubic) -> CenterCrop(224) -> ToTensor -> Normalize(OpenAI CLIP mean/std). That is exactly what
GeoCLIP's HF ``CLIPImageProcessor`` for ``openai/clip-vit-large-patch14`` does (shortest edge 224,
bicubic, centre crop 224, rescale 1/255, same mean/std), and ``encode_image(normalize=False)``
returns the same projected 768-d features as HF ``CLIPModel.get_image_features``, which is what
GeoCLIP's image MLP head was trained on. One difference is removed: torchvision's ``CenterCrop``
rounds the crop offset, HF's centre crop floors it (a 1-pixel shift on odd margins), so every
``CenterCrop`` of the transform is replaced by ``FloorCenterCrop``, as GeoCLIP crops.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from retrieval_service.core.errors import ConfigError, WeightsNotFoundError
from retrieval_service.core.hub import hub_reachable
from retrieval_service.retrieval.checkpoint import create_from_checkpoint

logger = logging.getLogger(__name__)

RANDOM_INIT_SEED = 1234
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_registry_lock = threading.Lock()


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else is validated by torch."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}", "use auto, cpu, cuda, cuda:N or mps (GEOAGENT_DEVICE)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available", "set GEOAGENT_DEVICE=cpu or auto")
    return dev


def resolve_model_name(image_model: str) -> str:
    """Register a config-JSON path with open_clip and return the model name to create."""
    import open_clip

    if image_model.startswith("hf-hub:"):
        return image_model
    if image_model.endswith(".json") or os.path.sep in image_model:
        path = Path(image_model).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"image model config {path} does not exist",
                "set GEOAGENT_IMAGE_MODEL to an open_clip model name (e.g. ViT-L-14) or an existing config JSON",
            )
        with _registry_lock:
            open_clip.add_model_config(path)
        return path.stem
    if image_model not in open_clip.list_models():
        raise ConfigError(
            f"unknown open_clip model {image_model!r}",
            "set GEOAGENT_IMAGE_MODEL to one of open_clip.list_models() (e.g. ViT-L-14) or a model config JSON path",
        )
    return image_model


def _cached_hub_file(hf_hub: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    repo_id = hf_hub.rstrip("/")
    for filename in _HF_WEIGHT_FILES:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return found
    return None


def _entry_kwargs(entry) -> dict:
    """open_clip build options recorded with stored weights (QuickGELU, preprocessing)."""
    pre = entry.preprocess
    kwargs = {
        "force_quick_gelu": entry.quick_gelu,
        "image_mean": pre.get("mean"),
        "image_std": pre.get("std"),
        "image_interpolation": pre.get("interpolation"),
        "image_resize_mode": pre.get("resize_mode"),
    }
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items() if v is not None}


class FloorCenterCrop:
    """Centre crop whose offset is floored ((h - size) // 2), as HF ``CLIPImageProcessor`` crops;
    images smaller than the crop are padded like torchvision's."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def __call__(self, img: Image.Image):
        from torchvision.transforms import functional as F

        th, tw = self.size
        w, h = img.size
        if w < tw or h < th:  # torchvision pads first; keep its behaviour for tiny images
            return F.center_crop(img, [th, tw])
        top, left = (h - th) // 2, (w - tw) // 2
        return img.crop((left, top, left + tw, top + th))

    def __repr__(self) -> str:
        return f"FloorCenterCrop(size={self.size})"


def floor_center_crops(preprocess):
    """``preprocess`` (a torchvision Compose) with each ``CenterCrop`` replaced by ``FloorCenterCrop``."""
    from torchvision import transforms as T

    steps = getattr(preprocess, "transforms", None)
    if steps is None:
        return preprocess
    return T.Compose([FloorCenterCrop(tuple(t.size)) if isinstance(t, T.CenterCrop) else t for t in steps])


class ImageEncoder:
    """Batched CLIP image features with open_clip, under ``torch.inference_mode``."""

    def __init__(
        self,
        image_model: str,
        image_pretrained: str,
        device: str = "auto",
        batch_size: int = 32,
        *,
        models_dir: Path | None = None,
        quick_gelu: bool | None = None,
    ) -> None:
        """``models_dir``: where ``geoagent models download``/``import`` put weights (looked at before
        the hub cache). ``quick_gelu``: None = decide from the weights (OpenAI CLIP needs QuickGELU)."""
        import open_clip

        self.models_dir = models_dir

        self.model_spec = image_model
        self.pretrained = image_pretrained
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.model_name = resolve_model_name(image_model)
        kwargs: dict = {}
        pretrained: str | None = image_pretrained
        if image_pretrained.lower() == "none":
            logger.warning(
                "IMAGE ENCODER %s HAS RANDOM WEIGHTS (pretrained=none): results are meaningless, for plumbing only",
                self.model_name,
            )
            pretrained = None
        elif Path(image_pretrained).expanduser().is_file():
            pretrained = str(Path(image_pretrained).expanduser())
            kwargs = self._local_kwargs(Path(pretrained), quick_gelu)
        elif os.path.sep in image_pretrained or image_pretrained.endswith((".pt", ".bin", ".safetensors", ".pth")):
            raise WeightsNotFoundError(
                f"checkpoint file {image_pretrained} does not exist",
                "set GEOAGENT_IMAGE_PRETRAINED to an existing local checkpoint, an open_clip tag, or none",
            )
        else:
            pretrained, kwargs = self._resolve_tag(image_pretrained)
        if quick_gelu is not None and pretrained is not None:
            kwargs["force_quick_gelu"] = quick_gelu
        self.quick_gelu = bool(kwargs.get("force_quick_gelu", "quickgelu" in self.model_name.lower()))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            try:
                if pretrained is not None and Path(pretrained).is_file():  # one copy of the weights, memory-mapped
                    model, preprocess = create_from_checkpoint(self.model_name, Path(pretrained), self.device, **kwargs)
                else:
                    model, _, preprocess = open_clip.create_model_and_transforms(
                        self.model_name, pretrained=pretrained, device=self.device, **kwargs
                    )
            except RuntimeError as exc:
                if "download" in str(exc).lower() or "Failed to" in str(exc):
                    raise WeightsNotFoundError(
                        f"weights {self.model_name}/{image_pretrained} could not be loaded: {exc}",
                        self._weights_hint(),
                    ) from exc
                raise
        model.eval()
        self.model = model
        self.preprocess = floor_center_crops(preprocess)
        self.dim = self._output_dim()
        logger.info("image encoder %s/%s on %s, %d-d", self.model_name, image_pretrained, self.device, self.dim)

    def _weights_hint(self) -> str:
        return (
            "run `geoagent models download` (online), or on a connected machine `geoagent models download` then "
            "`geoagent models export models.tar` and here `geoagent models import models.tar`; or set "
            "GEOAGENT_IMAGE_PRETRAINED=/path/to/checkpoint (a filled Hugging Face cache, HF_HOME, is used too)"
        )

    def _local_kwargs(self, path: Path, quick_gelu: bool | None) -> dict:
        """How to build the model for a local checkpoint: from its manifest entry when
        ``models download`` stored it, else QuickGELU when it is OpenAI CLIP weights for a model
        whose open_clip 'openai' weights need it (the path names openai), unless ``quick_gelu`` says."""
        import open_clip

        from retrieval_service.retrieval.model_store import entry_for_file

        entry = entry_for_file(self.models_dir, path) if self.models_dir is not None else None
        if entry is not None:
            return _entry_kwargs(entry)
        if quick_gelu is None and "quickgelu" not in self.model_name.lower():
            cfg = open_clip.get_pretrained_cfg(self.model_name, "openai") or {}
            if cfg.get("quick_gelu") and "openai" in "/".join(path.parts[-3:]).lower():  # file, snapshot, repo folder
                logger.info(
                    "%s looks like OpenAI CLIP weights: building %s with QuickGELU (GEOAGENT_IMAGE_QUICK_GELU=false to override)",
                    path,
                    self.model_name,
                )
                return {"force_quick_gelu": True}
        return {}

    def _resolve_tag(self, tag: str) -> tuple[str, dict]:
        """Fail fast offline: use the cached hub file directly, else check the hub answers at all."""
        import open_clip

        if getattr(self, "models_dir", None) is not None:  # `geoagent models download` / `models import` put it here
            from retrieval_service.retrieval.model_store import find_weights

            stored = find_weights(self.models_dir, self.model_name, tag)  # type: ignore[arg-type]
            if stored is not None:
                return str(stored[0]), _entry_kwargs(stored[1])
        cfg = open_clip.get_pretrained_cfg(self.model_name, tag)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(self.model_name)
            raise WeightsNotFoundError(
                f"open_clip has no pretrained weights {tag!r} for {self.model_name}",
                f"use one of {tags or ['none']} or a local checkpoint path in GEOAGENT_IMAGE_PRETRAINED",
            )
        hf_hub = cfg.get("hf_hub")
        if hf_hub:
            cached = _cached_hub_file(hf_hub)
            if cached:
                kwargs = {
                    "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
                    "image_mean": cfg.get("mean"),
                    "image_std": cfg.get("std"),
                    "image_interpolation": cfg.get("interpolation"),
                    "image_resize_mode": cfg.get("resize_mode"),
                }
                return cached, {k: v for k, v in kwargs.items() if v is not None}
        if not hub_reachable():
            raise WeightsNotFoundError(
                f"weights {self.model_name}/{tag} are not cached and the model hub is unreachable (offline)",
                self._weights_hint(),
            )
        return tag, {}

    def _output_dim(self) -> int:
        visual = self.model.visual
        dim = getattr(visual, "output_dim", None)
        if isinstance(dim, int):
            return dim
        size = getattr(visual, "image_size", (224, 224))
        size = size if isinstance(size, (tuple, list)) else (size, size)
        with torch.inference_mode():
            return int(self.model.encode_image(torch.zeros(1, 3, *size, device=self.device)).shape[-1])

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Raw (un-normalised) projected CLIP features, shape (n, dim), float32."""
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.stack([self.preprocess(img) for img in images[start : start + self.batch_size]])
                feats = self.model.encode_image(batch.to(self.device), normalize=False)
                out.append(feats.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)
