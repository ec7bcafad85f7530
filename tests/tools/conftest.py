"""Fixtures for the tool tests: settings with the real Cityscapes TFLite model, shared services
(heavy objects built once per session), a fake retriever that follows the Retriever interface."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from retrieval_service.core.photo import Photo
from retrieval_service.core.types import Candidate, GeoFilter, RetrievalResult
from tests.conftest import shared_path

PARIS = (48.8566, 2.3522)


class FakeRetriever:
    """Follows the Retriever interface: candidates around Paris, verification by distance to Paris.

    It loads the image like the real one, so missing or broken files fail the same way.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def search(
        self,
        image: Any,
        *,
        k_gallery: int = 10,
        k_database: int = 10,
        geo_filter: GeoFilter | None = None,
        dissimilar: int = 0,
    ) -> RetrievalResult:
        image.decode()
        self.calls.append(
            (
                "search",
                {
                    "image": image,
                    "k_gallery": k_gallery,
                    "k_database": k_database,
                    "geo_filter": geo_filter,
                    "dissimilar": dissimilar,
                },
            )
        )
        gallery = [
            Candidate(
                lat=PARIS[0] + 0.01 * i,
                lon=PARIS[1] - 0.01 * i,
                score=0.9 - 0.01 * i,
                source="gallery",
                payload={"country_code": "FR"},
            )
            for i in range(30)
        ]
        database = [
            Candidate(
                lat=PARIS[0],
                lon=PARIS[1] + 0.02 * i,
                score=0.8 - 0.01 * i,
                source="database",
                payload={"id": f"img{i}", "path": f"/x/{i}.jpg"},
            )
            for i in range(30)
        ]
        far = [
            Candidate(lat=-33.9, lon=151.2, score=0.01, source="database", payload={"id": f"far{i}"}) for i in range(dissimilar)
        ]
        return RetrievalResult(gallery=gallery[:k_gallery], database=database[:k_database], dissimilar=far, geo_filter=geo_filter)

    def verify(self, image: Any, coords: Sequence[tuple[float, float]]) -> list[float]:
        image.decode()
        self.calls.append(("verify", list(coords)))
        return [math.exp(-math.dist(PARIS, c) / 10.0) for c in coords]


@pytest.fixture(scope="session")
def cityscapes_model() -> Path:
    return shared_path("models", "cityscapes-deeplab", "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite")


@pytest.fixture(scope="session")
def tool_settings(tmp_path_factory: pytest.TempPathFactory, cityscapes_model: Path):
    from agent.settings import Settings

    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        segmenter="auto",
        segmenter_model=str(cityscapes_model),
        image_pretrained="none",
        device="cpu",
    )


@pytest.fixture(scope="session")
def fake_retriever() -> FakeRetriever:
    return FakeRetriever()


@pytest.fixture(scope="session")
def services(tool_settings, fake_retriever):
    from tools import Services

    return Services(tool_settings, retriever=fake_retriever)


@pytest.fixture(scope="session")
def tools_by_name(services) -> dict[str, Any]:
    from tools import make_tools

    return {t.name: t for t in make_tools(services)}


@pytest.fixture(scope="session")
def dev_photo(dev_images: Path) -> Path:
    return sorted(dev_images.glob("*.jpg"))[0]


def shot(path: Path | str) -> dict[str, Any]:
    """A photo tool's arguments for ``path``: the runtime carrying its resolved Photo (as the graph injects it)."""
    from tools import photo_runtime

    return {"runtime": photo_runtime(Photo.resolve(path, Path(path).parent / ".cache"))}


def draw_text(path: Path, lines: Sequence[str], size: tuple[int, int] = (1024, 512)) -> Path:
    """A white image with black text lines drawn by PIL, saved to ``path``."""
    img = Image.new("RGB", size, (245, 245, 245))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=56)
    for i, line in enumerate(lines):
        draw.text((50, 60 + 110 * i), line, fill=(10, 10, 10), font=font)
    img.save(path)
    return path
