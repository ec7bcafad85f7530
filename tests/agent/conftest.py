from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    """A real (synthetic) 1600x1200 JPEG."""
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (1600, 1200), (90, 140, 200)).save(path, quality=85)
    return path


@pytest.fixture()
def agent_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in ("GEOAGENT_LLM_MODEL", "GEOAGENT_CONFIG", "GEOAGENT_QDRANT_URL"):
        monkeypatch.delenv(key, raising=False)
    from agent.settings import load_settings

    return load_settings(data_dir=tmp_path / "data", max_steps=4, llm_max_retries=2, top_k=10)
