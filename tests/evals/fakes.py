"""Fake predictors for the harness tests, importable as --predictor tests.evals.fakes:NAME."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from agent.prediction import Prediction, TraceEntry
from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.types import Candidate


def fake_location(image: str) -> tuple[float, float]:
    """A deterministic location from the image's file name."""
    h = int(hashlib.sha256(Path(image).name.encode()).hexdigest()[:8], 16)
    return (h % 1600) / 10.0 - 80.0, (h // 1600 % 3600) / 10.0 - 180.0


class FakePredictor:
    """Predicts fake_location(image); images named 'broken*' raise ImageLoadError."""

    def __init__(self, delay_s: float = 0.0, mode: str = "policy") -> None:
        self.delay_s = delay_s
        self.mode = mode
        self.calls: list[str] = []

    def invoke(self, input: dict[str, Any], config: dict | None = None) -> Prediction:
        image = str(input["image"])
        self.calls.append(image)
        if self.delay_s:
            time.sleep(self.delay_s)
        if Path(image).name.startswith("broken"):
            raise ImageLoadError(f"cannot read {image}", "give a real image")
        lat, lon = fake_location(image)
        return Prediction(
            image=image,
            lat=lat,
            lon=lon,
            confidence=0.5,
            source="gallery",
            mode=self.mode,
            alternatives=[Candidate(lat=lat, lon=lon, score=0.9), Candidate(lat=0.0, lon=0.0, score=0.1)],
            trace=[TraceEntry(tool="retrieve", args={"image": image, "k": 2}, summary="2 candidates", latency_ms=1.0)],
            messages=[{"role": "assistant", "content": "fake"}],
        )


def fast_factory(settings, *, mode: str) -> FakePredictor:
    return FakePredictor(mode=mode)


def slow_factory(settings, *, mode: str) -> FakePredictor:
    return FakePredictor(delay_s=0.15, mode=mode)
