"""The real agent on 8 IM2GPS3k dev photos with the tiny random encoder (plumbing, not accuracy)."""

import json

import pytest

from agent.settings import load_settings
from evals.datasets import load_dataset
from evals.records import read_rows
from evals.runner import default_factory, run_eval


@pytest.fixture()
def agent_env(gallery_env):
    """The prebuilt GPS gallery of tests/conftest.py (building it here would take minutes)."""
    return gallery_env


@pytest.mark.slow
def test_real_run_on_eight_dev_photos(agent_env, dev_labels, dev_images, tmp_path):
    settings = load_settings()
    ds = load_dataset("im2gps3k", dev_labels, dev_images)
    out = tmp_path / "run"
    result = run_eval(
        ds, out, settings=settings, mode="retrieval", factory=default_factory, limit=8, workers=2, progress=False, argv=["test"]
    )
    assert result.written == 8
    rows = read_rows(out / "predictions.jsonl")
    assert [r["id"] for r in sorted(rows, key=lambda r: r["id"])] == sorted(i.id for i in ds.items[:8])
    for r in rows:
        assert r["error"] is None, r["error"]
        assert r["source"] != "fallback", r["warnings"]
        assert r["trace"] and r["trace"][0]["tool"] == "retrieve" and not r["trace"][0]["error"]
        assert r["distance_km"] is not None and r["country_gt"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 8 and summary["failed"] == 0
    for t, frac in summary["accuracy_km"].items():
        assert frac == sum(r["hits"][t] for r in rows) / 8
    report = (out / "report.md").read_text()
    assert "| **this run** (retrieval, random weights)" in report and "RANDOM, UNTRAINED IMAGE WEIGHTS" in report
    assert summary["split"]["label"] == "im2gps3k subset: 8 of 2997 photos (im2gps3k-dev)"
