import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from evals.compare import compare_runs
from evals.records import read_rows
from retrieval_service.core.errors import DatasetError
from tests.waiting import GUARD_S, wait_for

REPO = Path(__file__).resolve().parents[2]
GEOAGENT = [sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main())"]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOAGENT_")}
    env.update(GEOAGENT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    return env


def _run_args(small_bench, out, *extra):
    images, labels = small_bench
    return [
        "eval",
        "run",
        "--dataset",
        "im2gps3k",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_help_explains_every_option(capsys):
    assert main(["eval", "run", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--dataset",
        "--images",
        "--labels",
        "--mode",
        "--out",
        "--limit",
        "--workers",
        "--predictor",
        "--retry-failed",
        "--id-col",
        "rerank",
        "retrieval",
        "rag",
    ):
        assert option in text
    assert main(["eval", "compare", "--help"]) == 0 and "baseline" in capsys.readouterr().out
    assert main(["eval", "report", "--help"]) == 0


def test_cli_errors_are_clear(small_bench, tmp_path, capsys):
    assert main(_run_args(small_bench, tmp_path / "r", "--mode", "magic")) == 2
    err = capsys.readouterr().err
    assert "unknown mode 'magic'" in err and "fix:" in err
    assert main(["eval", "report", str(tmp_path / "nothing")]) == 2
    assert "holds no predictions.jsonl" in capsys.readouterr().err


def test_kill_mid_run_then_resume_every_id_once(small_bench, tmp_path):
    out = tmp_path / "run"
    cmd = GEOAGENT + _run_args(small_bench, out, "--predictor", "tests.evals.fakes:slow_factory")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path = out / "predictions.jsonl"
    wait_for(lambda: path.exists() and path.read_bytes().count(b"\n") >= 2, "two predictions written", proc=proc, poll_s=0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=GUARD_S)
    killed_rows = read_rows(path)
    assert 2 <= len(killed_rows) < 6
    done = subprocess.run(
        GEOAGENT + _run_args(small_bench, out, "--predictor", "tests.evals.fakes:slow_factory"),
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(killed_rows)} resumed" in done.stdout
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert sorted(ids) == ["a.jpg", "b.jpg", "broken1.jpg", "c.jpg", "d.jpg", "e.jpg"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 6 and summary["failed"] == 1
    assert "missing" in done.stderr and "gone.jpg" in done.stderr


def test_compare_two_runs(small_bench, tmp_path, capsys):
    a, b = tmp_path / "run_a", tmp_path / "run_b"
    for out in (a, b):
        assert main(_run_args(small_bench, out, "--predictor", "tests.evals.fakes:fast_factory")) == 0
    # make run_b perfect on two images: they become hits everywhere only in run_b
    rows = read_rows(b / "predictions.jsonl")
    for r in rows:
        if r["id"] in ("a.jpg", "b.jpg"):
            r.update(distance_km=0.5, hits={t: True for t in r["hits"]})
    (b / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmp = compare_runs([a, b])
    t1 = cmp.pairs[0].tests[0]
    assert (t1.threshold_km, t1.only_baseline, t1.only_other) == (1, 0, 2)
    assert t1.diff == pytest.approx(2 / 6) and t1.p_mcnemar == pytest.approx(0.5)
    assert cmp.pairs[0].shared == 6 and cmp.pairs[0].scored_both == 5 and cmp.pairs[0].p_wilcoxon is not None
    capsys.readouterr()
    assert main(["eval", "compare", str(a), str(b), "--out", str(tmp_path / "cmp.md")]) == 0
    text = capsys.readouterr().out
    assert "run_b vs run_a" in text and "+33.33" in text and (tmp_path / "cmp.md").read_text() in text
    with pytest.raises(DatasetError, match="at least two"):
        compare_runs([a])
