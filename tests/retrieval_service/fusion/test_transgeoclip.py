"""TransGeoCLIP's parts: the location-attention GPS encoder learns a generated task at least as well as
the RFF sum; the image-text-GPS joint embedding (text<->GPS as well as fused<->text); the presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from retrieval_service.fusion.config import FeatureSpec, FusionConfig
from retrieval_service.fusion.gps import make_gps_encoder
from retrieval_service.fusion.losses import Embeddings, LossParts, fusion_loss, info_nce
from retrieval_service.fusion.model import FusionModel, FusionOutput
from retrieval_service.fusion.presets import PRESETS, preset, table_rows


def _scale_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates and the unit target each must match: the sum of a coarse (30-degree) and a fine
    (3-degree) cell's random vector, so that a GPS encoder must use two scales at once."""
    g = torch.Generator().manual_seed(seed)
    coarse, fine = (
        torch.randn(6 * 12, 16, generator=torch.Generator().manual_seed(7)),
        torch.randn(60 * 120, 16, generator=torch.Generator().manual_seed(8)),
    )
    lat = torch.rand(n, generator=g) * 120 - 60
    lon = torch.rand(n, generator=g) * 360 - 180
    c = ((lat + 90) // 30).long() * 12 + ((lon + 180) // 30).long()
    f = ((lat + 90) // 3).long() * 120 + ((lon + 180) // 3).long()
    target = torch.nn.functional.normalize(coarse[c] + 0.7 * fine[f], dim=-1)
    return torch.stack((lat, lon), dim=1), target


def _train_and_score(kind: str, steps: int = 150) -> float:
    """Top-1 retrieval accuracy (GPS -> its target among 256 held-out targets) after training."""
    config = FusionConfig(
        dim=16, embed_dim=16, heads=2, gps_encoder=kind, rff_features=32, gps_hidden=64, dropout=0.0, sigmas=(1.0, 16.0), seed=3
    )
    torch.manual_seed(0)
    encoder = make_gps_encoder(config)
    opt = torch.optim.Adam(encoder.parameters(), lr=2e-3)
    scale = torch.tensor(20.0)
    for step in range(steps):
        latlon, target = _scale_task(128, seed=step)
        loss = info_nce(torch.nn.functional.normalize(encoder(latlon), dim=-1), target, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
    latlon, target = _scale_task(256, seed=10_000)
    with torch.no_grad():
        sims = torch.nn.functional.normalize(encoder(latlon), dim=-1) @ target.T
    return float((sims.argmax(dim=1) == torch.arange(256)).float().mean())


def test_location_attention_learns_at_least_as_well_as_the_rff_sum():
    rff = _train_and_score("rff")
    attention = _train_and_score("location_attention")
    print(f"top-1 of 256 after training: location attention {attention:.3f}, RFF sum {rff:.3f}")
    assert attention > 10 / 256  # learns: chance is 1/256
    assert attention >= rff - 0.03, (attention, rff)


SPEC = FeatureSpec(image_model="t", image_pretrained="none", token_grid=2, token_dim=24, pooled_dim=24, text_dim=12)


def losses_of(
    model: FusionModel, out: FusionOutput, latlon: torch.Tensor, text: torch.Tensor, mask: torch.Tensor | None = None
) -> LossParts:
    """The training loss of one process holding the whole batch."""
    emb = Embeddings(out.fused, out.seg, model.encode_gps(latlon), text=model.encode_text(text), text_mask=mask)
    return fusion_loss(model.config, model.scales(), emb)


def test_the_joint_embedding_aligns_text_with_gps_too():
    """With text features the loss has a text<->GPS term beside fused<->text, and it trains the GPS
    encoder: descriptions of places land beside their coordinates."""
    config = FusionConfig(
        dim=16,
        embed_dim=16,
        heads=2,
        layers=0,
        use_segmentation=False,
        use_text=True,
        rff_features=16,
        gps_hidden=32,
        dropout=0.0,
    )
    model = FusionModel(SPEC, config)
    g = torch.Generator().manual_seed(0)
    latlon = torch.rand(8, 2, generator=g) * torch.tensor([120.0, 300.0]) - torch.tensor([60.0, 150.0])
    text = torch.randn(8, 12, generator=g)
    out = model(torch.randn(8, 4, 24, generator=g), torch.randn(8, 24, generator=g))
    parts = losses_of(model, out, latlon, text, torch.tensor([True] * 6 + [False] * 2))
    assert parts.text is not None and parts.text_gps is not None
    expected = parts.fused + config.text_loss_weight * parts.text + config.text_gps_loss_weight * parts.text_gps
    assert torch.allclose(parts.total, expected)
    model.zero_grad()
    parts.text_gps.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gps.parameters())
    assert model.text_head is not None and all(p.grad is not None for p in model.text_head.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model(
            torch.randn(8, 4, 24, generator=torch.Generator().manual_seed(1)),
            torch.randn(8, 24, generator=torch.Generator().manual_seed(2)),
        )
        loss = losses_of(model, out, latlon, text).text_gps
        assert loss is not None
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_presets_name_every_value_and_its_source():
    assert set(PRESETS) == {"dualgeo", "transgeoclip"}
    dual = preset("DualGeo")
    assert dual is not None and dual.model_values()["projection"] == "mercator" and dual.train_values()["lr"] == 4e-5
    assert 1 / dual.model_values()["init_temperature"] == pytest.approx(math.exp(3.99), rel=1e-3)  # logit scale 3.99: ~54
    FusionConfig(**dual.model_values())  # every value is a valid setting
    FusionConfig(**PRESETS["transgeoclip"].model_values())
    assert all(source for *_, source in table_rows())
    assert preset(None) is None
    from retrieval_service.core.errors import ConfigError

    with pytest.raises(ConfigError, match="dualgeo"):
        preset("geoclip++")


def test_the_train_command_applies_a_preset_and_explicit_options_win(tmp_path: Path, capsys):
    from agent.cli import main
    from retrieval_service.fusion.synthetic import write_synthetic_features

    features = write_synthetic_features(tmp_path / "features", rows=48, view="image")
    tiny = ["--dim", "16", "--embed-dim", "16", "--heads", "2", "--layers", "1", "--batch-size", "8", "--max-steps", "1"]
    tiny += ["--val-fraction", "0.2", "--val-gallery", "train", "--json"]
    for out, extra, projection in (("a", [], "mercator"), ("b", ["--projection", "equal_earth"], "equal_earth")):
        code = main(["train", "fusion", str(features.root), "--out", str(tmp_path / out), "--preset", "dualgeo", *tiny, *extra])
        assert code == 0, capsys.readouterr().err
        state = torch.load(tmp_path / out / "state.pt", map_location="cpu", weights_only=False)
        assert state["config"]["projection"] == projection
        assert state["config"]["init_temperature"] == pytest.approx(1 / math.exp(3.99), rel=1e-3)
        assert state["train"]["lr"] == 4e-5
    capsys.readouterr()
    code = main(["train", "fusion", str(features.root), "--out", str(tmp_path / "c"), "--preset", "nope", *tiny])
    err = capsys.readouterr().err
    assert code != 0 and "unknown preset 'nope'" in err and "dualgeo" in err
