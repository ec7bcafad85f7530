"""The fuzz suite: hostile and odd photos (tests/fuzz_corpus.py) through every entry point: the Python
API with the real tools, every tool, `locate` (single, batch, --json), `eval run`, `index build` and
the chat. Each input ends in a clear error (type, message, fix) or a valid answer, never a traceback,
a hang or a lost row.

Bounds asserted: every input through the API within 30 s; the whole corpus (24 inputs, including a
108-Mpx bomb and 16000x12 strips) within 120 s per entry point; the media path (resolve, check,
decode, EXIF) over the whole corpus peaks under 1 GiB in a fresh process (the old code took 10 GB
on one strip). URLs on loopback (slow,
huge, redirecting, HTML) are covered by tests/retrieval_service/test_download.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.prediction import Prediction
from retrieval_service.core.errors import ImageLoadError
from tests.fuzz_corpus import EXPECTED_VALID, build_corpus
from tests.waiting import GUARD_S

MAX_RSS_BYTES = 2**30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture()
def real_tools_agent(tmp_path: Path, tiny_env):
    """The policy graph with the real tools (EXIF, OCR, the shipped segmenter, geocoding, clustering)
    and a fake retriever (candidates around Paris), so that only retrieval is not real."""
    from agent import load_agent
    from agent.settings import Settings
    from tests.tools.conftest import FakeRetriever
    from tools import Services, make_tools

    settings = Settings(data_dir=tmp_path / "data", segmenter="tflite")
    return load_agent(settings, mode="policy", tools=make_tools(Services(settings, retriever=FakeRetriever())))


def test_python_api_with_the_real_tools(corpus, real_tools_agent):
    start_all = time.monotonic()
    for name, path in corpus.items():
        start = time.monotonic()
        for given in (str(path),):
            try:
                pred = real_tools_agent.invoke({"image": given})
            except ImageLoadError as exc:
                assert name not in EXPECTED_VALID, f"{name}: {exc}"
                assert exc.message and exc.hint, name
                continue
            assert name in EXPECTED_VALID, f"{name} should have been refused"
            assert isinstance(pred, Prediction) and (pred.lat, pred.lon) != (0.0, 0.0)
            assert not [t for t in pred.trace if t.error], f"{name}: {[t.error for t in pred.trace if t.error]}"
            if name == "gps_out_of_range.jpg":
                assert any("out of range" in w for w in pred.warnings)
        assert time.monotonic() - start < 30, name
    for name in ("rotated.jpg",):  # bytes, a file object and a PIL image go the same way
        from PIL import Image

        data = corpus[name].read_bytes()
        with open(corpus[name], "rb") as stream, Image.open(corpus[name]) as pil:
            for given in (data, stream, pil):
                assert isinstance(real_tools_agent.invoke({"image": given}), Prediction)
    assert time.monotonic() - start_all < 120


_MEDIA_ONLY = """
import json, sys
from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.photo import Photo
from retrieval_service.evidence.exif import read_exif
outcome = {}
for path in sys.argv[2:]:
    try:
        photo = Photo.resolve(path, sys.argv[1])
        photo.decode(), read_exif(photo.path)
        outcome[path] = "ok"
    except ImageLoadError as exc:
        outcome[path] = "error" if exc.hint else "no fix"
# VmHWM is this process's own peak (ru_maxrss would carry the parent's peak across fork + exec)
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rss": hwm, "outcome": outcome}))
"""


def test_the_media_path_stays_within_its_memory_bound(corpus, tmp_path: Path):
    """In a fresh process (its own peak resident memory, VmHWM): resolving, checking and decoding the whole
    corpus, bomb and strips included, peaks under 1 GiB (a single 16000x12 strip once took 10 GB)."""
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", _MEDIA_ONLY, str(tmp_path / "cache"), *map(str, corpus.values())],
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["rss"] < MAX_RSS_BYTES, report["rss"]
    assert {Path(p).name for p, o in report["outcome"].items() if o == "ok"} == EXPECTED_VALID
    assert "no fix" not in report["outcome"].values()


def test_every_photo_is_resolved_or_refused_and_every_tool_answers(corpus, tmp_path: Path, tiny_env):
    """Each input is resolved once at the boundary (a bad one refused with the fix); every image tool
    answers for every photo that resolves."""
    from agent.settings import Settings
    from retrieval_service.core.errors import ImageLoadError
    from retrieval_service.core.photo import Photo
    from tests.tools.conftest import FakeRetriever
    from tools import Services, make_tools, photo_runtime

    settings = Settings(data_dir=tmp_path / "data", segmenter="tflite")
    tools = {t.name: t for t in make_tools(Services(settings, retriever=FakeRetriever()))}
    image_tools = ("read_exif", "read_text", "segment_scene", "retrieve", "verify_locations")
    for name, path in corpus.items():
        try:
            photo = Photo.resolve(path, settings.cache_dir, settings)
        except ImageLoadError as exc:
            assert name not in EXPECTED_VALID, (name, exc)
            assert exc.hint, (name, exc)
            continue
        assert name in EXPECTED_VALID, name
        for tool in image_tools:
            args: dict = {"runtime": photo_runtime(photo)}
            if tool == "verify_locations":
                args["candidates"] = [{"lat": 48.85, "lon": 2.35}]
            out = tools[tool].invoke(args)
            assert isinstance(out, dict) and "error" not in out, (name, tool, out)


def test_locate_batch_json_one_line_each(corpus, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import agent.api as api
    from tests.agent.fakes import make_fake_tools

    real = api.load_agent
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GEOAGENT_LLM_MODEL", raising=False)
    monkeypatch.setattr(api, "load_agent", lambda settings=None, **kw: real(settings, tools=make_fake_tools(), **kw))
    names = list(corpus)
    start = time.monotonic()
    res = CliRunner().invoke(app, ["locate", *map(str, corpus.values()), "--json"])
    assert time.monotonic() - start < 120
    assert res.exit_code == 1 and "Traceback" not in res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == len(names)
    for name, row in zip(names, rows, strict=False):
        if name in EXPECTED_VALID:
            assert "error" not in row and "lat" in row, (name, row)
        else:
            assert set(row["error"]) == {"type", "message", "fix"} and "lat" not in row and row["error"]["fix"], (name, row)
    one = CliRunner().invoke(app, ["locate", str(corpus["bomb.png"])])
    assert one.exit_code == 1 and "error:" in one.stderr and "fix:" in one.stderr and "Traceback" not in one.output


def test_eval_run_keeps_a_row_for_every_input(corpus, tmp_path: Path):
    from agent.settings import Settings
    from evals.datasets import load_dataset
    from evals.records import read_rows
    from evals.runner import run_eval
    from tests.agent.fakes import make_fake_tools

    images = corpus["gray.jpg"].parent
    labels = tmp_path / "labels.csv"
    names = [n for n in corpus if n not in ("a_directory", "missing.jpg")]
    labels.write_text("IMG_ID,LAT,LON\n" + "".join(f'"{n}",48.85,2.35\n' for n in names))
    settings = Settings(data_dir=tmp_path / "data")

    def factory(s, mode):
        from agent import load_agent

        return load_agent(s, mode=mode, tools=make_fake_tools())

    ds = load_dataset("csv", labels, images)
    result = run_eval(ds, tmp_path / "run", settings=settings, mode="policy", factory=factory, progress=False)
    rows = {r["id"]: r for r in read_rows(tmp_path / "run" / "predictions.jsonl")}
    assert set(rows) == set(names) and result.written == len(names)
    for name in names:
        assert (rows[name]["error"] is None) == (name in EXPECTED_VALID), (name, rows[name]["error"])
        if rows[name]["error"]:
            assert rows[name]["error_type"] == "ImageLoadError" and rows[name]["pred"] is None


def test_index_build_counts_every_bad_file(corpus, tiny_settings, tmp_path: Path):
    from retrieval_service.retrieval.ingest import ingest_csv
    from retrieval_service.retrieval.retriever import Retriever

    names = list(corpus)
    csv = tmp_path / "db.csv"
    csv.write_text("IMG_ID,LAT,LON\n" + "".join(f'"{n}",48.85,2.35\n' for n in names))
    r = Retriever(tiny_settings)
    try:
        report = ingest_csv(r, csv, corpus["gray.jpg"].parent, batch_size=8)
    finally:
        r.close()
    assert report.added == len(EXPECTED_VALID) and report.unreadable == len(names) - len(EXPECTED_VALID)


def test_chat_survives_every_input(corpus, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import agent.api as api
    from tests.agent.fakes import make_fake_tools

    real = api.load_agent
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GEOAGENT_LLM_MODEL", raising=False)
    monkeypatch.setattr(api, "load_agent", lambda settings=None, **kw: real(settings, tools=make_fake_tools(), **kw))
    lines = ['/image "x', "/image", *(f'/image "{p}"' for p in corpus.values()), "where?", "/quit"]
    res = CliRunner().invoke(app, ["chat"], input="\n".join(lines) + "\n")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output[-3000:]
    assert "No closing quotation" not in res.output and res.output.count("usage: /image PATH") == 2
    assert res.output.count("error: ") >= len(corpus) - len(EXPECTED_VALID)
