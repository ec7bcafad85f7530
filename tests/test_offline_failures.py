"""Offline failures surface once and clearly: missing CLIP weights stop `locate` with exit 2 (not a
placeholder answer per photo), an unavailable segmenter is not retried on every call, and OCR noise
does not become place names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from agent.settings import load_settings
from retrieval_service.core.errors import ConfigError, WeightsNotFoundError
from tests.waiting import GUARD_S


def test_locate_without_cached_weights_exits_2_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (64, 64), (90, 140, 200)).save(photo)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("GEOAGENT_")}
    env.update(
        GEOAGENT_DATA_DIR=str(tmp_path / "data"),
        GEOAGENT_IMAGE_MODEL="ViT-B-32",
        GEOAGENT_IMAGE_PRETRAINED="laion2b_s34b_b79k",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
    )
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "locate", str(photo), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=GUARD_S,
    )
    assert res.returncode == 2, res.stderr
    [line] = res.stdout.splitlines()  # one line for the photo: its error, no placeholder 0,0 answer
    row = json.loads(line)
    assert (
        "lat" not in row and row["error"]["type"] == "WeightsNotFoundError" and "geoagent models download" in row["error"]["fix"]
    )
    assert "ViT-B-32" in res.stderr and "fix:" in res.stderr and "GEOAGENT_IMAGE_PRETRAINED" in res.stderr
    assert "Traceback" not in res.stderr


def test_segmenter_failure_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    import retrieval_service.evidence.segmentation as segmentation
    from tools.services import Services

    calls = []

    def failing(settings):
        calls.append(1)
        raise WeightsNotFoundError("SegFormer weights are not cached", "set GEOAGENT_SEGMENTER=tflite")

    monkeypatch.setattr(segmentation, "make_segmenter", failing)
    services = Services(load_settings(segmenter="segformer"))
    for _ in range(3):
        with pytest.raises(WeightsNotFoundError):
            _ = services.segmenter
    assert len(calls) == 1


def test_segformer_offline_fails_fast_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    import retrieval_service.core.hub as hub
    from retrieval_service.evidence.segmentation import SegFormerSegmenter

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(WeightsNotFoundError, match="unreachable"):
        SegFormerSegmenter("nvidia/segformer-b0-finetuned-ade-512-512")


def test_place_names_come_only_from_confident_ocr_lines() -> None:
    from retrieval_service.evidence.ocr import TextLine, TextReader

    reader = TextReader(place_confidence=0.8)
    reader.read_lines = lambda image: [  # type: ignore[method-assign]
        TextLine(text="Lyon", confidence=0.55),
        TextLine(text="Rue de Rivoli, Paris", confidence=0.95),
    ]
    reading = reader.read(Image.new("RGB", (8, 8)))
    names = {(p.name, p.country_code) for p in reading.places}
    assert ("Paris", "FR") in names
    assert not any(name == "Lyon" for name, _ in names)
    assert [line.text for line in reading.lines] == ["Lyon", "Rue de Rivoli, Paris"]


def test_unknown_segmenter_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="segmenter"):
        load_settings(segmenter="deeplab")


def test_console_entry_point_returns_the_commands_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() (the console script) must pass on a sub-command's non-zero exit, e.g. a failed photo."""
    import agent.api as api
    from agent.cli import main
    from tests.agent.fakes import make_fake_tools

    real = api.load_agent
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GEOAGENT_LLM_MODEL", raising=False)
    monkeypatch.setattr(api, "load_agent", lambda settings=None, **kw: real(settings, tools=make_fake_tools(), **kw))
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (32, 32), (10, 120, 30)).save(photo)
    assert main(["locate", str(photo)]) == 0
    assert main(["locate", str(photo), str(tmp_path / "missing.jpg")]) == 1
