"""Semantic segmentation back ends: a photo -> a map of class ids.

Backends behind one ``Segmenter`` protocol:
- ``TFLiteSegmenter``: any TFLite segmentation model run with ``ai_edge_litert`` (e.g. the Cityscapes
  DeepLab model: input 513x513 uint8 RGB, output class ids, labels file one name per line).
- ``SegFormerSegmenter``: SegFormer ADE20K via ``transformers`` (optional extra ``geoagent[segformer]``;
  weights come from the model hub on first use).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from retrieval_service.core.errors import ConfigError, WeightsNotFoundError
from retrieval_service.evidence.settings import EvidenceSettings

logger = logging.getLogger(__name__)

DEFAULT_SEGFORMER = "nvidia/segformer-b0-finetuned-ade-512-512"


@runtime_checkable
class Segmenter(Protocol):
    """Turns an RGB image into a map of class ids (indices into ``labels``)."""

    name: str
    labels: list[str]

    def segment(self, image: Image.Image) -> np.ndarray:
        """(H, W) integer class ids for the image (any resolution the model works at)."""
        ...


def read_labels(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"segmentation labels file not found: {p}",
            "set GEOAGENT_SEGMENTER_LABELS to a text file with one label per line",
        )
    labels = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        raise ConfigError(f"segmentation labels file {p} is empty", "write one class name per line, in class-id order")
    return labels


class TFLiteSegmenter:
    """A TFLite segmentation model run on CPU with ``ai_edge_litert``; the interpreter is built once."""

    name = "tflite"

    def __init__(self, model_path: str | Path, labels_path: str | Path | None = None, *, num_threads: int = 2) -> None:
        model = Path(model_path)
        if not model.is_file():
            raise WeightsNotFoundError(
                f"TFLite segmentation model not found: {model}",
                "set GEOAGENT_SEGMENTER_MODEL to an existing .tflite file",
            )
        labels_file = Path(labels_path) if labels_path else model.with_name("labels.txt")
        self.labels = read_labels(labels_file)
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interp = Interpreter(model_path=str(model), num_threads=num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise WeightsNotFoundError(
                f"{model} is not a usable TFLite model: {exc}",
                "point GEOAGENT_SEGMENTER_MODEL at a TFLite segmentation model",
            ) from exc
        inp = self._interp.get_input_details()[0]
        self._input_index = inp["index"]
        self._input_dtype = inp["dtype"]
        _, self.height, self.width, _ = (int(x) for x in inp["shape"])
        self._output_index = self._interp.get_output_details()[0]["index"]
        self._lock = threading.Lock()  # a TFLite interpreter is not thread-safe

    def segment(self, image: Image.Image) -> np.ndarray:
        arr = np.asarray(image.convert("RGB").resize((self.width, self.height), Image.Resampling.BILINEAR))
        if self._input_dtype == np.float32:
            arr = arr.astype(np.float32) / 127.5 - 1.0
        with self._lock:
            self._interp.set_tensor(self._input_index, arr[None].astype(self._input_dtype))
            self._interp.invoke()
            out = np.array(self._interp.get_tensor(self._output_index))
        out = out[0] if out.ndim >= 3 else out
        if out.ndim == 3:  # logits (H, W, C)
            out = out.argmax(axis=-1)
        return out.astype(np.int64)


class SegFormerSegmenter:
    """SegFormer (ADE20K, 150 classes) through ``transformers``; model loaded once."""

    name = "segformer"

    def __init__(self, model_id: str = DEFAULT_SEGFORMER, *, device: str = "cpu") -> None:
        if importlib.util.find_spec("transformers") is None:
            raise ConfigError(
                "the SegFormer backend needs the 'transformers' package",
                "pip install 'geoagent[segformer]', or set GEOAGENT_SEGMENTER=tflite with a .tflite model",
            )
        import torch
        from transformers import AutoImageProcessor, SegformerForSemanticSegmentation

        from retrieval_service.core.hub import hub_reachable

        try:
            try:  # cached weights (or a local folder) first: no network round trips
                self._processor = AutoImageProcessor.from_pretrained(model_id, local_files_only=True)
                self._model = SegformerForSemanticSegmentation.from_pretrained(model_id, local_files_only=True).eval()
            except OSError:
                if not hub_reachable():
                    raise OSError("not cached locally and the model hub is unreachable (offline)") from None
                self._processor = AutoImageProcessor.from_pretrained(model_id)
                self._model = SegformerForSemanticSegmentation.from_pretrained(model_id).eval()
        except (OSError, ValueError) as exc:
            raise WeightsNotFoundError(
                f"SegFormer weights '{model_id}' could not be loaded: {exc}",
                "check the hub id / network, or set GEOAGENT_SEGMENTER=tflite with a local .tflite model",
            ) from exc
        self._device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self._model.to(self._device)
        id2label = self._model.config.id2label
        self.labels = [str(id2label[i]).split(",")[0].strip() for i in range(len(id2label))]
        self._torch = torch

    def segment(self, image: Image.Image) -> np.ndarray:
        inputs = self._processor(images=image.convert("RGB"), return_tensors="pt").to(self._device)
        with self._torch.inference_mode():
            logits = self._model(**inputs).logits
        return logits.argmax(dim=1)[0].cpu().numpy().astype(np.int64)


SHIPPED_TFLITE = (
    Path(__file__).resolve().parent / "models" / "cityscapes-deeplab" / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"
)
"""The Cityscapes DeepLab model shipped in the package (Apache-2.0): segmentation works offline."""


def segformer_cached(model_id: str = DEFAULT_SEGFORMER) -> bool:
    """True when ``transformers`` is installed and the SegFormer weights are on disk (no network)."""
    if importlib.util.find_spec("transformers") is None:
        return False
    if Path(model_id).expanduser().is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def make_segmenter(settings: EvidenceSettings) -> Segmenter:
    """Build the configured segmenter. Raises ConfigError when segmentation is unavailable.

    ``auto``: a configured ``.tflite`` model, else SegFormer when its weights are cached, else the
    shipped Cityscapes TFLite model (so segmentation works offline out of the box). ``tflite``
    without a model uses the shipped one."""
    choice, model = settings.segmenter, settings.segmenter_model
    if choice == "none":
        raise ConfigError(
            "scene segmentation is disabled (GEOAGENT_SEGMENTER=none)",
            "set GEOAGENT_SEGMENTER=auto (the shipped Cityscapes model), tflite with GEOAGENT_SEGMENTER_MODEL, or segformer",
        )
    if choice == "tflite" or (choice == "auto" and model and model.endswith(".tflite")):
        if not model:
            return TFLiteSegmenter(SHIPPED_TFLITE, settings.segmenter_labels)
        return TFLiteSegmenter(model, settings.segmenter_labels)
    if choice == "segformer" or (choice == "auto" and segformer_cached(model or DEFAULT_SEGFORMER)):
        return SegFormerSegmenter(model or DEFAULT_SEGFORMER, device=settings.device)
    return TFLiteSegmenter(SHIPPED_TFLITE, settings.segmenter_labels)
