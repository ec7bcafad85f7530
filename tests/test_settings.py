"""Settings: defaults, environment, TOML file, precedence and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval_service.errors import ConfigError
from retrieval_service.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("GEOAGENT_"):
            monkeypatch.delenv(key)


def test_defaults_follow_the_design() -> None:
    s = load_settings()
    assert s.image_model == "ViT-L-14"
    assert s.image_pretrained == "openai"
    assert s.qdrant_url is None
    assert s.llm_model is None
    assert s.embedded_qdrant_path == s.data_dir / "qdrant"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GEOAGENT_IMAGE_MODEL", "ViT-B-32")
    monkeypatch.setenv("GEOAGENT_IMAGE_PRETRAINED", "none")
    monkeypatch.setenv("GEOAGENT_QDRANT_URL", "http://localhost:6333")
    s = load_settings()
    assert s.data_dir == tmp_path
    assert (s.image_model, s.image_pretrained, s.qdrant_url) == ("ViT-B-32", "none", "http://localhost:6333")


def test_empty_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOAGENT_QDRANT_URL", "")
    assert load_settings().qdrant_url is None


def test_toml_file_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "geoagent.toml"
    cfg.write_text('image_model = "ViT-B-16"\ntop_k = 7\nllm_model = "qwen-vl"\n')
    s = load_settings(cfg)
    assert (s.image_model, s.top_k, s.llm_model) == ("ViT-B-16", 7, "qwen-vl")
    monkeypatch.setenv("GEOAGENT_TOP_K", "9")  # environment beats the file
    assert load_settings(cfg).top_k == 9
    assert load_settings(cfg, top_k=3).top_k == 3  # explicit override beats both
    monkeypatch.setenv("GEOAGENT_CONFIG", str(cfg))
    assert load_settings().image_model == "ViT-B-16"


def test_toml_geoagent_table(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[geoagent]\ndevice = "cpu"\n')
    assert load_settings(cfg).device == "cpu"


def test_bad_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOAGENT_TOP_K", "lots")
    with pytest.raises(ConfigError, match="top_k"):
        load_settings()


def test_missing_and_broken_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
