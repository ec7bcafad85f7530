"""Reports that cannot mislead: report.md and summary.json name the image model and weights (with a
loud note when they are random), and the split and its size (a run on part of a benchmark is never
labelled as the benchmark). Before, a random-weights run read like a real one and a run on the
256-photo dev split was labelled "im2gps3k"."""

from __future__ import annotations

import json

from agent.settings import Settings
from evals.datasets import load_dataset
from evals.runner import run_eval
from tests.evals.fakes import FakePredictor


def _run(small_bench, out, settings):
    images, labels = small_bench
    ds = load_dataset("im2gps3k", labels, images)
    run_eval(ds, out, settings=settings, mode="policy", factory=lambda s, mode: FakePredictor(), progress=False, argv=["test"])
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


def test_a_random_weights_run_on_a_subset_says_so(small_bench, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", image_model="ViT-B-32", image_pretrained="none")
    report, summary = _run(small_bench, tmp_path / "run", settings)
    assert "> **WARNING: RANDOM, UNTRAINED IMAGE WEIGHTS (image_pretrained = 'none')" in report
    assert "| **this run** (policy, random weights) |" in report
    assert "- image model: **ViT-B-32 / none (encoder geoclip)** (random weights)" in report
    assert summary["image_model"]["random_weights"] is True and summary["image_model"]["image_model"] == "ViT-B-32"
    split = summary["split"]
    assert split == {
        "dataset": "im2gps3k",
        "label": f"im2gps3k subset: 6 of 2997 photos ({small_bench[1].parent.name})",
        "evaluated": 6,
        "published_size": 2997,
        "full": False,
        "labels": str(small_bench[1]),
    }
    assert f"- dataset: **{split['label']}**" in report and "> **Not the benchmark:**" in report
    assert "**im2gps3k**" not in report  # never labelled as the benchmark itself
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["image_model"]["random_weights"] is True


def test_a_run_with_real_weights_names_them_without_a_warning(small_bench, tmp_path):
    report, summary = _run(small_bench, tmp_path / "run", Settings(data_dir=tmp_path / "data"))
    assert "WARNING" not in report and "- image model: **ViT-L-14 / openai (encoder geoclip)**" in report
    assert summary["image_model"]["random_weights"] is False and summary["image_model"]["note"] is None
