"""Calibration: isotonic maps fitted on synthetic runs miscalibrated by construction, the
`geoagent calibrate` command, and Predictions that say they are calibrated."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from agent.decision import calibration
from agent.decision.sources import build_mixture
from agent.decision.summary import prediction_fields
from agent.settings import Settings
from evals.confidence import brier, ece
from retrieval_service.core.types import Candidate

THRESHOLDS = (1, 25, 200, 750, 2500)


def _synthetic(n: int, seed: int) -> tuple[list[dict[str, float]], list[float]]:
    """Overconfident predictions: the model says p, the truth hits with probability p**2."""
    rng = np.random.default_rng(seed)
    p25 = rng.uniform(0, 1, n)
    hit = rng.uniform(0, 1, n) < p25**2
    errors = np.where(hit, rng.uniform(0, 25, n), rng.uniform(26, 5000, n))
    predicted = [{str(t): float(p) for t in THRESHOLDS} for p in p25]
    return predicted, errors.tolist()


def test_isotonic_calibration_lowers_held_out_ece():
    train, train_err = _synthetic(3000, seed=1)
    test, test_err = _synthetic(3000, seed=2)
    fitted = calibration.fit(train, train_err, "policy", "f" * 16)
    hit = [e <= 25 for e in test_err]
    raw = [row["25"] for row in test]
    mapped = [fitted.apply(row)["25"] for row in test]
    before, after = ece(raw, hit), ece(mapped, hit)
    # p vs p**2: ECE = E|p - p^2| = 1/6 ~ 0.167 before; isotonic brings it near 0 on held-out data
    assert 0.14 < before < 0.19 and after < 0.03, (before, after)
    assert brier(mapped, hit) < brier(raw, hit)
    assert all(np.diff([fitted.apply(r)[str(t)] for t in THRESHOLDS]).min() >= 0 for r in test[:50])


def test_calibrate_command_saves_a_map_that_predictions_use(tmp_path, monkeypatch):
    from agent.cli import app

    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    settings = Settings(data_dir=tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    predicted, errors = _synthetic(200, seed=3)
    with open(run / "predictions.jsonl", "w") as fh:
        for i, (p, e) in enumerate(zip(predicted, errors, strict=False)):
            fh.write(json.dumps({"id": str(i), "mode": "policy", "raw_probabilities": p, "distance_km": e, "error": None}) + "\n")
    (run / "config.json").write_text(json.dumps({"mode": "policy", "settings": settings.model_dump(mode="json")}))
    result = CliRunner().invoke(app, ["calibrate", str(run), "--json"])
    assert result.exit_code == 0, result.output
    saved = json.loads(result.output)
    assert saved[0]["rows"] == 200 and saved[0]["fingerprint"] == calibration.settings_fingerprint(settings)

    mixture = build_mixture([Candidate(lat=41.9, lon=12.5, score=0.3, probability=0.5, source="gallery")])
    fields = prediction_fields(mixture, 41.9, 12.5, settings=settings, mode="policy")
    assert fields["calibrated"] is True and fields["confidence"] == fields["probabilities"]["25"]
    assert fields["probabilities"] != fields["raw_probabilities"]
    # other settings (another image model) are not covered by that calibration
    other = prediction_fields(
        mixture, 41.9, 12.5, settings=Settings(data_dir=tmp_path / "data", image_model="ViT-B-32"), mode="policy"
    )
    assert other["calibrated"] is False and other["probabilities"] == other["raw_probabilities"]


def test_calibrate_command_explains_an_empty_run(tmp_path, monkeypatch):
    from agent.cli import app

    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    from retrieval_service.core.errors import DatasetError

    result = CliRunner().invoke(app, ["calibrate", str(tmp_path)])
    assert isinstance(result.exception, DatasetError) and "predictions.jsonl" in str(result.exception)
