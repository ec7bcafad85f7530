import json

import pytest

from agent.settings import Settings
from evals.datasets import load_dataset
from evals.metrics import distance_km
from evals.records import read_rows
from evals.report import write_reports
from evals.runner import import_factory, run_eval
from retrieval_service.core.errors import ConfigError
from tests.evals.fakes import FakePredictor, fake_location


@pytest.fixture()
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", llm_api_key="sk-secret-value")


def _run(small_bench, out, settings, **kw):
    images, labels = small_bench
    ds = load_dataset("im2gps3k", labels, images)
    predictor = kw.pop("predictor", FakePredictor())
    result = run_eval(
        ds, out, settings=settings, mode="policy", factory=lambda s, mode: predictor, progress=False, argv=["test"], **kw
    )
    return result, predictor


def test_run_writes_consistent_rows_summary_and_report(small_bench, tmp_path, settings):
    out = tmp_path / "run"
    result, _ = _run(small_bench, out, settings, workers=3)
    assert (result.total, result.written, result.failed, result.missing) == (6, 6, 1, 1)
    rows = read_rows(out / "predictions.jsonl")
    assert sorted(r["id"] for r in rows) == ["a.jpg", "b.jpg", "broken1.jpg", "c.jpg", "d.jpg", "e.jpg"]
    for r in rows:
        if r["id"] == "broken1.jpg":
            assert r["error"].startswith("ImageLoadError") and r["distance_km"] is None
            assert not any(r["hits"].values())
            continue
        lat, lon = fake_location(r["image"])
        assert r["pred"] == {"lat": lat, "lon": lon}
        assert r["distance_km"] == pytest.approx(distance_km(r["gt"]["lat"], r["gt"]["lon"], lat, lon))
        assert r["hits"] == {t: r["distance_km"] < int(t) for t in ("1", "25", "200", "750", "2500")}
        assert r["trace"][0]["tool"] == "retrieve" and r["messages"][0]["content"] == "fake"
        assert len(r["top_k"]) == 2 and r["distance_method"] == "geodesic-wgs84"
        assert r["latency_ms"] >= 0 and r["country_gt"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 6 and summary["failed"] == 1 and summary["missing_images"] == 1
    for t, frac in summary["accuracy_km"].items():
        assert frac == pytest.approx(sum(bool(r["hits"][t]) for r in rows) / 6)
        lo, hi = summary["accuracy_ci95"][t]
        assert 0 <= lo <= frac <= hi <= 1
    scored = sorted(r["distance_km"] for r in rows if r["distance_km"] is not None)
    assert summary["median_km"] == pytest.approx(scored[2])
    report = (out / "report.md").read_text()
    assert (
        "| **this run** (policy) | "
        + " | ".join(f"{100 * summary['accuracy_km'][t]:.2f}" for t in ("1", "25", "200", "750", "2500"))
        in report
    )
    assert "GeoCLIP" in report and "1 excluded because the image file is missing" in report
    assert (out / "accuracy_vs_threshold.png").stat().st_size > 1000 and (out / "error_map.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["llm_api_key"] == "***" and "sk-secret" not in (out / "config.json").read_text()
    assert config["mode"] == "policy" and config["dataset"]["missing_ids"] == ["gone.jpg"]
    assert config["versions"]["python"] and config["versions"]["torch"]


def test_resume_skips_finished_and_repairs_torn_line(small_bench, tmp_path, settings):
    out = tmp_path / "run"
    _run(small_bench, out, settings, limit=3, report=False)
    path = out / "predictions.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"id": "d.jpg", "gt": {"la')  # a kill -9 mid-write
    result, predictor = _run(small_bench, out, settings)
    assert result.resumed == 3 and result.written == 3
    assert sorted(predictor.calls) == sorted(str(small_bench[0] / n) for n in ("d.jpg", "broken1.jpg", "e.jpg"))
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6
    result, predictor = _run(small_bench, out, settings)
    assert result.written == 0 and predictor.calls == []


def test_retry_failed_reruns_only_failures(small_bench, tmp_path, settings):
    out = tmp_path / "run"
    _run(small_bench, out, settings, report=False)
    result, predictor = _run(small_bench, out, settings, retry_failed=True, report=False)
    assert [c.rsplit("/", 1)[-1] for c in predictor.calls] == ["broken1.jpg"] and result.written == 1
    assert len(read_rows(out / "predictions.jsonl")) == 6


def test_resume_refuses_another_mode(small_bench, tmp_path, settings):
    out = tmp_path / "run"
    _run(small_bench, out, settings, limit=1, report=False)
    ds = load_dataset("im2gps3k", small_bench[1], small_bench[0])
    with pytest.raises(ConfigError, match="mode='policy'"):
        run_eval(ds, out, settings=settings, mode="retrieval", factory=lambda s, mode: FakePredictor(), progress=False)


def test_bad_runner_arguments(small_bench, tmp_path, settings):
    ds = load_dataset("im2gps3k", small_bench[1], small_bench[0])
    for kw, msg in (
        ({"mode": "magic"}, "unknown mode"),
        ({"mode": "policy", "workers": 0}, "--workers"),
        ({"mode": "policy", "limit": 0}, "--limit"),
    ):
        with pytest.raises(ConfigError, match=msg):
            run_eval(ds, tmp_path / "r", settings=settings, factory=lambda s, mode: FakePredictor(), **kw)
    with pytest.raises(ConfigError, match=r"module\.path:factory|package\.module:factory"):
        import_factory("no_colon")
    with pytest.raises(ConfigError, match="cannot import"):
        import_factory("tests.evals.fakes:nope")


def test_report_regenerates_from_rows(small_bench, tmp_path, settings):
    out = tmp_path / "run"
    _run(small_bench, out, settings, report=False)
    assert not (out / "summary.json").exists()
    summary = write_reports(out, plots=False)
    assert summary.n == 6 and summary.failed == 1
    assert 0 <= summary.country_accuracy <= 5 / 6 and summary.geoscore < 5000


def test_rows_and_report_carry_lmm_usage_and_cost(small_bench, tmp_path):
    from agent.prediction import Usage

    class CostlyPredictor(FakePredictor):
        def invoke(self, input, config=None):
            pred = super().invoke(input, config)
            n = len(self.calls)
            return pred.model_copy(update={"usage": Usage(calls=n, input_tokens=1000 * n, output_tokens=100, seconds=0.5)})

    priced = Settings(data_dir=tmp_path / "data", llm_price_input_per_mtok=2.0, llm_price_output_per_mtok=10.0)
    out = tmp_path / "run"
    _run(small_bench, out, priced, predictor=CostlyPredictor())
    rows = read_rows(out / "predictions.jsonl")
    ok = [r for r in rows if not r["error"]]
    assert all(set(r["usage"]) == {"calls", "input_tokens", "output_tokens", "seconds"} for r in rows)
    assert [r["usage"] for r in rows if r["error"]] == [{"calls": 0, "input_tokens": 0, "output_tokens": 0, "seconds": 0}]
    summary = json.loads((out / "summary.json").read_text())["usage"]
    tokens_in = [r["usage"]["input_tokens"] for r in rows]
    assert summary["input_tokens"]["total"] == sum(tokens_in) and summary["photos"] == len(rows)
    assert summary["calls"]["mean"] == pytest.approx(sum(r["usage"]["calls"] for r in rows) / len(rows))
    money = sum(r["usage"]["input_tokens"] * 2.0 + r["usage"]["output_tokens"] * 10.0 for r in ok) / 1e6
    assert summary["cost"]["total"] == pytest.approx(money)
    report = (out / "report.md").read_text()
    assert "## LMM usage (per photo)" in report and f"| cost | {money:.4f} |" in report
    _run(small_bench, tmp_path / "free", Settings(data_dir=tmp_path / "data"))
    assert json.loads((tmp_path / "free" / "summary.json").read_text())["usage"]["cost"] is None
    assert "No price per token is configured" in (tmp_path / "free" / "report.md").read_text()


def test_resume_with_other_settings_is_refused_naming_the_differences(small_bench, tmp_path, settings):
    """Resuming with another top_k or model once overwrote config.json and mixed two systems in one file."""
    out = tmp_path / "run"
    _run(small_bench, out, settings, limit=2, report=False)
    config = json.loads((out / "config.json").read_text())
    digest = config["fingerprint"]["digest"]
    assert config["fingerprint"]["fields"]["top_k"] == settings.top_k
    assert {r["fingerprint"] for r in read_rows(out / "predictions.jsonl")} == {digest}
    other = settings.model_copy(update={"top_k": 50, "image_model": "ViT-B-32"})
    with pytest.raises(ConfigError, match=r"image_model: 'ViT-L-14' -> 'ViT-B-32'; .*top_k: 20 -> 50") as err:
        _run(small_bench, out, other, report=False)
    assert "new --out" in err.value.hint
    assert json.loads((out / "config.json").read_text())["fingerprint"]["digest"] == digest  # untouched
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    result, _ = _run(small_bench, out, settings, report=False)  # the same settings resume
    assert result.resumed == 2


def test_a_second_run_on_the_same_directory_is_refused(small_bench, tmp_path, settings):
    from evals.runner import run_lock

    out = tmp_path / "run"
    out.mkdir()
    held = run_lock(out)  # another process (or thread) is running there
    try:
        with pytest.raises(ConfigError, match="another `geoagent eval run` is writing to"):
            _run(small_bench, out, settings, report=False)
        assert not (out / "predictions.jsonl").exists()
    finally:
        held.release()
    result, _ = _run(small_bench, out, settings, report=False)
    assert result.written == 6


def test_bad_label_rows_become_failed_rows(small_bench, tmp_path, settings):
    images, labels = small_bench
    labels.write_text(labels.read_text() + "x.jpg,someone,123,4,1\na.jpg,someone,1,1,1\n../labels.csv,someone,1,1,1\n")
    ds = load_dataset("im2gps3k", labels, images)
    out = tmp_path / "run"
    result = run_eval(ds, out, settings=settings, mode="policy", factory=lambda s, mode: FakePredictor(), progress=False)
    assert result.invalid == 3 and result.written == 6
    rows = {r["id"]: r for r in read_rows(out / "predictions.jsonl")}
    assert (
        rows["x.jpg"]["error_type"] == "LabelError"
        and "bad coordinates" in rows["x.jpg"]["error"]
        and rows["x.jpg"]["gt"] is None
    )
    assert "repeats the id" in rows["a.jpg (line 10)"]["error"] and "outside" in rows["../labels.csv"]["error"]
    assert rows["a.jpg"]["error"] is None and rows["a.jpg"]["gt"]["lat"] == 48.8566
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 9 and summary["failed"] == 4  # 3 bad rows + broken1.jpg
    again = run_eval(ds, out, settings=settings, mode="policy", factory=lambda s, mode: FakePredictor(), progress=False)
    assert again.written == 0 and len(read_rows(out / "predictions.jsonl")) == 9
