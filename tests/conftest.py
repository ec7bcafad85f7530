"""Shared fixtures: a tiny random open_clip model (768-d, fits the GeoCLIP head), settings in a
temporary data dir, and the real assets in ../shared (tests that need them skip when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

TINY_CLIP_CONFIG = {
    "embed_dim": 768,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real asset {path} is absent (../shared is not beside the checkout)")
    return path


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An open_clip model config JSON for a tiny ViT whose output is 768-d (GeoCLIP's head input)."""
    path = tmp_path_factory.mktemp("models") / "geoagent-tiny-vit.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    return path


@pytest.fixture()
def tiny_env(tiny_model_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for the tiny random model and an empty data dir (also for subprocesses)."""
    env = {
        "GEOAGENT_DATA_DIR": str(tmp_path / "data"),
        "GEOAGENT_IMAGE_MODEL": str(tiny_model_config),
        "GEOAGENT_IMAGE_PRETRAINED": "none",
        "GEOAGENT_DEVICE": "cpu",
    }
    for key in ("GEOAGENT_QDRANT_URL", "GEOAGENT_LLM_MODEL", "GEOAGENT_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture()
def tiny_settings(tiny_env: dict[str, str]):
    from retrieval_service.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def dev_images() -> Path:
    return shared_path("data", "im2gps3k-dev", "images")


@pytest.fixture(scope="session")
def dev_labels() -> Path:
    return shared_path("data", "im2gps3k-dev", "labels.csv")


@pytest.fixture(scope="session")
def exif_dir() -> Path:
    return shared_path("data", "exif-gps")


@pytest.fixture(scope="session")
def cityscapes_dir() -> Path:
    return shared_path("models", "cityscapes-deeplab")
