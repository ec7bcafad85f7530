"""Settings: defaults, environment, TOML file, precedence and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import load_settings
from retrieval_service.core.errors import ConfigError


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


def test_each_layer_owns_its_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """The LMM settings live in the agent's section, not in the retrieval layer; one object has all."""
    from agent.settings import AgentSettings, Settings
    from evals.settings import EvalRunSettings, EvalSettings
    from retrieval_service.core.settings import load_section
    from retrieval_service.evidence.settings import EvidenceSettings
    from retrieval_service.retrieval.settings import RetrievalSettings

    assert not any(f.startswith("llm_") or f == "max_steps" for f in RetrievalSettings.model_fields)
    assert not any(f.startswith("llm_") for f in EvidenceSettings.model_fields)
    assert "segmenter" not in RetrievalSettings.model_fields and "top_k" not in EvidenceSettings.model_fields
    assert {"llm_model", "max_steps"} <= set(AgentSettings.model_fields)
    monkeypatch.setenv("GEOAGENT_LLM_MODEL", "m")
    monkeypatch.setenv("GEOAGENT_TOP_K", "7")
    monkeypatch.setenv("GEOAGENT_EVAL_WORKERS", "3")
    s = load_settings()
    assert isinstance(s, (RetrievalSettings, EvidenceSettings, AgentSettings)) and (s.llm_model, s.top_k) == ("m", 7)
    assert not isinstance(s, EvalSettings)
    e = load_section(EvalRunSettings)
    assert isinstance(e, Settings) and (e.eval_workers, e.top_k, e.llm_model) == (3, 7, "m")
    r = load_section(RetrievalSettings)  # a layer can load just its section, from the same variables
    assert r.top_k == 7 and not hasattr(r, "llm_model")
