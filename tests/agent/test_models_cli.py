"""`geoagent models download/export/import/list` and QuickGELU, with locally built weight files
standing in for the model hub (which tests never reach)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from agent.cli import app
from retrieval_service.core.errors import ConfigError
from retrieval_service.retrieval import model_store
from retrieval_service.retrieval.image_encoder import ImageEncoder, resolve_model_name


@pytest.fixture()
def fake_hub(tiny_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 'hub' serving the weights of the tiny model for the tag 'demo' (OpenAI-like: QuickGELU)."""
    import open_clip

    name = resolve_model_name(tiny_env["GEOAGENT_IMAGE_MODEL"])
    model = open_clip.create_model(name, pretrained=None, force_quick_gelu=True)
    served = tmp_path / "hub" / "open_clip_pytorch_model.bin"
    served.parent.mkdir()
    torch.save(model.state_dict(), served)
    cfg = {
        "hf_hub": "local/tiny-demo/",
        "quick_gelu": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    real_cfg = model_store._open_clip_cfg
    monkeypatch.setattr(model_store, "_open_clip_cfg", lambda m, p: cfg if p == "demo" else real_cfg(m, p))
    asked: list[dict] = []

    def downloader(**kw):
        asked.append(kw)
        if kw["filename"] != served.name:
            raise FileNotFoundError(kw["filename"])
        return str(served)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", downloader)
    monkeypatch.setenv("GEOAGENT_IMAGE_PRETRAINED", "demo")
    return name, model, asked


def test_download_list_export_import_and_load_offline(fake_hub, tiny_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    name, model, asked = fake_hub
    runner = CliRunner()
    res = runner.invoke(app, ["models", "download"])
    assert res.exit_code == 0, res.output
    assert f"{name}/demo" in res.stdout and "QuickGELU True" in res.stdout and asked[-1]["repo_id"] == "local/tiny-demo"
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert listed["configured_stored"] is True
    row = next(r for r in listed["files"] if r["name"] == f"{name}/demo")
    assert row["bytes"] > 0 and len(row["sha256"]) == 64
    assert any(r["name"] == "cityscapes-deeplab" for r in listed["files"])

    archive = tmp_path / "carry" / "models.tar"
    assert runner.invoke(app, ["models", "export", str(archive)]).exit_code == 0
    air_gapped = tmp_path / "air"
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(air_gapped))
    res = runner.invoke(app, ["models", "import", str(archive)])
    assert res.exit_code == 0, res.output
    stored = model_store.find_weights(model_store.models_dir(air_gapped), name, "demo")
    assert stored is not None and model_store.sha256_file(stored[0]) == row["sha256"]

    monkeypatch.setattr("retrieval_service.retrieval.image_encoder.hub_reachable", lambda: False)  # offline
    enc = ImageEncoder(tiny_env["GEOAGENT_IMAGE_MODEL"], "demo", "cpu", models_dir=model_store.models_dir(air_gapped))
    assert enc.quick_gelu
    acts = {type(m).__name__ for m in enc.model.modules()}
    assert "QuickGELU" in acts and "GELU" not in acts
    for key, value in model.state_dict().items():
        assert torch.equal(enc.model.state_dict()[key], value), key


def test_import_refuses_damaged_or_foreign_archives(fake_hub, tmp_path: Path):
    data = tmp_path / "data"
    model_store.download_clip(data, fake_hub[0], "demo")  # fake_hub[0] is the resolved model name
    archive = model_store.export_models(data, tmp_path / "m.tar") and tmp_path / "m.tar"
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w") as dst:
        for member in src.getmembers():
            blob = src.extractfile(member).read()
            if member.name != model_store.MANIFEST:
                blob = blob[:-10] + b"0123456789"
            member.size = len(blob)
            import io

            dst.addfile(member, io.BytesIO(blob))
    with pytest.raises(ConfigError, match="missing or damaged"):
        model_store.import_models(tmp_path / "other", damaged)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 1
        import io

        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ConfigError, match="not a readable model archive"):
        model_store.import_models(tmp_path / "other", evil)
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(ConfigError, match="not found"):
        model_store.import_models(tmp_path / "other", tmp_path / "nope.tar")


def test_a_local_openai_checkpoint_is_built_with_quickgelu(tmp_path: Path):
    """GEOAGENT_IMAGE_PRETRAINED=/path/to/openai/checkpoint once built ViT-L-14 with GELU (features off by 2e-2)."""
    enc = ImageEncoder.__new__(ImageEncoder)
    enc.model_name, enc.models_dir = "ViT-L-14", tmp_path / "models"
    openai = tmp_path / "hf" / "models--timm--vit_large_patch14_clip_224.openai" / "abc123" / "open_clip_model.safetensors"
    assert enc._local_kwargs(openai, None) == {"force_quick_gelu": True}
    assert enc._local_kwargs(tmp_path / "w" / "x" / "laion2b" / "model.bin", None) == {}  # LAION weights use GELU
    assert enc._local_kwargs(openai, False) == {}  # GEOAGENT_IMAGE_QUICK_GELU=false decides
    enc.model_name = "ViT-L-14-quickgelu"
    assert enc._local_kwargs(openai, None) == {}  # the model already has QuickGELU


def test_an_offline_download_says_so_in_one_line_and_stops(tiny_env, monkeypatch: pytest.MonkeyPatch, caplog):
    """Offline, the hub client logs every retry through its own handler and the root logger (each
    line twice) for over a minute per file; now its lines are held back, one warning says the hub
    cannot be reached, and the second weights file is not tried."""
    import logging

    cfg = {"hf_hub": "local/tiny-demo/", "quick_gelu": False}
    monkeypatch.setattr(model_store, "_open_clip_cfg", lambda m, p: cfg)
    asked: list[str] = []

    class ConnectError(Exception):
        pass

    def offline(**kw):
        asked.append(kw["filename"])
        for n in range(1, 6):  # what huggingface_hub logs while it retries
            logging.getLogger("huggingface_hub.utils._http").warning(f"Retrying in 1s [Retry {n}/5].")
        raise ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with caplog.at_level(logging.INFO):
        res = CliRunner().invoke(app, ["models", "download", "--pretrained", "demo"])
    assert res.exit_code != 0 and isinstance(res.exception, model_store.WeightsNotFoundError)
    assert "models export" in res.exception.hint
    assert asked == [model_store.WEIGHT_FILES[0]]  # not a second wait for the other file name
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["retrieval_service.retrieval.model_store"], [r.getMessage() for r in warnings]
    assert "cannot be reached" in warnings[0].getMessage() and "Temporary failure" in warnings[0].getMessage()
