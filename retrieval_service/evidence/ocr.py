"""OCR with RapidOCR (PP-OCR models shipped in the ``rapidocr-onnxruntime`` wheel): text lines with
confidence, the writing scripts found, and place names matched against the GeoNames gazetteer."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.evidence.gazetteer import Gazetteer, PlaceMatch
from retrieval_service.evidence.scripts import detect_scripts

logger = logging.getLogger(__name__)

MAX_SIDE = 1024  # photos are downscaled to this longest side before detection (speed)
DET_MIN_SIDE = 480  # RapidOCR upscales images whose shorter side is below this (its default 736 is slow)


class TextLine(BaseModel):
    text: str
    confidence: float


class TextReading(BaseModel):
    """What was read: the lines, their scripts, and the gazetteer places they name (each marked
    ``reliable`` or not: only reliable places are evidence of where the photo was taken)."""

    lines: list[TextLine]
    scripts: list[str]
    places: list[PlaceMatch]

    @property
    def reliable_places(self) -> list[PlaceMatch]:
        return [p for p in self.places if p.reliable]

    @property
    def unconfirmed_places(self) -> list[PlaceMatch]:
        return [p for p in self.places if not p.reliable]


class TextReader:
    """Reads text in photos. The OCR engine and the gazetteer are created once, on first use."""

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        place_confidence: float = 0.8,
        gazetteer: Gazetteer | None = None,
        max_lines: int = 20,
    ) -> None:
        self.min_confidence = min_confidence
        # place names are looked up only in lines read this confidently: OCR noise on textures
        # otherwise turns into towns ("Made", "Band") that would become candidates
        self.place_confidence = place_confidence
        self.max_lines = max_lines
        self._gazetteer = gazetteer
        self._engine: Any = None
        self._lock = threading.Lock()

    @property
    def gazetteer(self) -> Gazetteer:
        with self._lock:
            if self._gazetteer is None:
                self._gazetteer = Gazetteer()
            return self._gazetteer

    def _ocr(self) -> Any:
        with self._lock:
            if self._engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:
                    raise GeoAgentError(
                        "OCR needs the 'rapidocr-onnxruntime' package", "pip install rapidocr-onnxruntime"
                    ) from exc
                self._engine = RapidOCR(det_limit_side_len=DET_MIN_SIDE)
            return self._engine

    def read_lines(self, image: Image.Image) -> list[TextLine]:
        img = image.convert("RGB")
        if max(img.size) > MAX_SIDE:
            img = img.copy()
            img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
        bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
        result, _ = self._ocr()(bgr, use_cls=False)
        lines = [
            TextLine(text=str(text).strip(), confidence=float(score))
            for _box, text, score in (result or [])
            if float(score) >= self.min_confidence and str(text).strip()
        ]
        return lines[: self.max_lines]

    def read(self, image: Image.Image) -> TextReading:
        lines = self.read_lines(image)
        text = "\n".join(line.text for line in lines)
        sure = "\n".join(line.text for line in lines if line.confidence >= self.place_confidence)
        places = self.gazetteer.find(sure, context=text) if sure else []
        return TextReading(lines=lines, scripts=detect_scripts(text), places=places)
