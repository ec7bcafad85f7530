"""`geoagent locate` and `geoagent chat` with the fake tool set (plumbing, exit codes, output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from tests.agent.fakes import PARIS, make_fake_tools


@pytest.fixture()
def fake_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Route the CLI's load_agent to the fake tools (the real settings loading stays)."""
    import agent.api as api

    real = api.load_agent
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GEOAGENT_LLM_MODEL", raising=False)
    monkeypatch.setattr(api, "load_agent", lambda settings=None, **kw: real(settings, tools=make_fake_tools(), **kw))
    return CliRunner()


def test_locate_json_one_line_per_photo_and_failures(fake_cli, photo, tmp_path):
    missing = tmp_path / "nope.jpg"
    res = fake_cli.invoke(app, ["locate", str(photo), str(missing), str(photo), "--json"])
    assert res.exit_code == 1
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 3  # exactly one line per input, in order, failures included
    for row in (rows[0], rows[2]):
        assert {"image", "lat", "lon", "candidates", "confidence", "place", "rationale", "trace", "source"} <= set(row)
        assert abs(row["lat"] - PARIS[0]) < 0.1 and row["mode"] == "policy"
        assert all(set(c) >= {"lat", "lon", "score"} for c in row["candidates"]) and row["candidates"]
    failed = rows[1]
    assert failed["image"] == str(missing) and "lat" not in failed and "lon" not in failed
    assert failed["error"]["type"] == "ImageLoadError" and "not found" in failed["error"]["message"] and failed["error"]["fix"]
    assert "nope.jpg" in res.stderr and "image not found" in res.stderr and "Traceback" not in res.stderr


def test_locate_text_and_map(fake_cli, photo, tmp_path):
    out = tmp_path / "m" / "map.html"
    res = fake_cli.invoke(app, ["locate", str(photo), "--mode", "rerank", "--map", str(out), "--top-k", "5"])
    assert res.exit_code == 0, res.output
    assert "answer:" in res.stdout and "Paris" in res.stdout and "why:" in res.stdout
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and '"name":"photo.jpg"' in html and '"clusters":[{"lat"' in html
    assert "<script src" not in html and "geoagentMap(" in html  # the offline map, assets inlined


def test_locate_bad_inputs(fake_cli, photo, tmp_path):
    res = fake_cli.invoke(app, ["locate", str(photo), "--mode", "magic"])
    assert res.exit_code != 0 and "unknown mode" in str(res.exception or res.output)
    res = fake_cli.invoke(app, ["locate", str(photo), "--map", str(tmp_path / "map.png")])
    assert res.exit_code != 0 and ".html" in str(res.exception or res.output)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    res = fake_cli.invoke(app, ["locate", str(not_image)])
    assert res.exit_code == 1 and "notes.jpg" in res.stderr


def test_locate_main_reports_config_errors_without_traceback(fake_cli, photo, capsys):
    from agent.cli import main

    assert main(["locate", str(photo), "--mode", "agent"]) == 2
    err = capsys.readouterr().err
    assert "no LMM is configured" in err and "GEOAGENT_LLM_MODEL" in err and "fix:" in err and "Traceback" not in err


def test_chat_without_lmm_answers_from_the_analysis(fake_cli, photo):
    script = f"where?\n/image {photo}\nwhich country is it?\nhow sure are you?\n/image /no/such.jpg\n/bogus\n/quit\n"
    res = fake_cli.invoke(app, ["chat"], input=script)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "No LMM is configured" in out
    assert "attach one with /image" in out  # question before any photo
    assert "- retrieve:" in out and "- verify_locations:" in out  # live tool steps
    assert "near Paris" in out and "Confidence" in out
    assert "image not found" in out and "unknown command /bogus" in out


def test_chat_session_persists_in_sqlite(fake_cli, photo, tmp_path):
    res = fake_cli.invoke(app, ["chat", "--session", "trip"], input=f"/image {photo}\n")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "data" / "sessions.sqlite").is_file()
    res = fake_cli.invoke(app, ["chat", "--session", "trip"], input="what are the coordinates?\n")
    assert "Resumed session 'trip'" in res.stdout and "Coordinates: 48." in res.stdout
    res = fake_cli.invoke(app, ["chat", "--session", "other"], input="what are the coordinates?\n")
    assert "attach one with /image" in res.stdout


def test_chat_follow_up_with_lmm_runs_the_tools_on_the_photos_thread(agent_settings, photo):
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from agent import load_agent
    from agent.conversation.session import ChatSession
    from tests.agent.fakes import ScriptedChatModel, call, submit

    final = {"lat": 48.86, "lon": 2.35, "confidence": 0.7, "rationale": "the Paris cluster"}
    model = ScriptedChatModel(
        script=[
            submit(final, "a1"),  # the analysis
            AIMessage("", tool_calls=[call("verify_locations", {"candidates": [{"lat": 50.85, "lon": 4.35}]}, "v1")]),
            AIMessage("Belgium scores lower than Paris, so it stays Paris."),  # the follow-up's reply
        ]
    )
    agent = load_agent(agent_settings, mode="agent", chat_model=model, tools=make_fake_tools(), checkpointer=InMemorySaver())
    sess = ChatSession(agent, session="t")
    events: list = []
    sess.attach(str(photo), on_event=events.append)
    assert any(e.get("type") == "tool" and e["tool"] == "retrieve" for e in events)
    assert (
        sess.ask("could it be Belgium instead?", on_event=events.append) == "Belgium scores lower than Paris, so it stays Paris."
    )
    assert model.remaining == 0
    follow = model.received[1]  # the question continues the photo's own conversation, with the tools
    assert [m.type for m in follow[:2]] == ["system", "human"] and follow[-1].type == "human"
    assert "Belgium" in follow[-1].content and any(isinstance(m, ToolMessage) and m.tool_call_id == "a1" for m in follow)
    assert "verify_locations" in model.offered[1]

    def has_photo(request):
        return any(
            isinstance(m.content, list) and any(b.get("type") == "image" for b in m.content if isinstance(b, dict))
            for m in request
        )

    assert [has_photo(r) for r in model.received] == [True, True, False]  # again on the follow-up's first request
    assert any(e.get("type") == "tool" and e["tool"] == "verify_locations" for e in events)
    assert [m.type for m in sess.history()] == ["human", "ai", "human", "ai"]


def test_locate_with_an_lmm_shows_usage_and_rag_samples(fake_cli, photo, monkeypatch):
    from evals.fake_llm_server import FakeOpenAI, Reply

    final = {"lat": 48.86, "lon": 2.35, "confidence": 0.7, "rationale": "the Paris cluster"}
    script = [Reply(calls=[("submit_answer", final)], usage=(1500, 50))]
    script += [Reply(calls=[("propose_location", {"lat": 48.85 + i / 100, "lon": 2.35})], usage=(100, 10)) for i in range(8)]
    with FakeOpenAI(script) as server:
        for key, value in {
            "GEOAGENT_LLM_MODEL": "fake-vl",
            "GEOAGENT_LLM_BASE_URL": server.base_url,
            "GEOAGENT_LLM_PRICE_INPUT_PER_MTOK": "2",
            "GEOAGENT_LLM_PRICE_OUTPUT_PER_MTOK": "10",
        }.items():
            monkeypatch.setenv(key, value)
        res = fake_cli.invoke(app, ["locate", str(photo)])
        assert res.exit_code == 0, res.output
        assert "lmm usage:   1 LMM requests, 1500 input + 50 output tokens" in res.stdout and "cost 0.0035" in res.stdout
        res = fake_cli.invoke(app, ["locate", str(photo), "--mode", "rag", "--rag-samples", "2", "--json"])
        assert res.exit_code == 0, res.output
    assert server.violations == [] and len(server.requests) == 1 + 8  # 4 prompts x 2 samples
    row = json.loads(res.stdout.splitlines()[0])
    assert row["usage"]["calls"] == 8 and row["usage"]["input_tokens"] == 800
    assert all(r.body.get("temperature") == 0.7 for r in server.requests[1:])


def test_chat_with_an_lmm_streams_tools_and_commands(fake_cli, photo, tmp_path, monkeypatch):
    from evals.fake_llm_server import FakeOpenAI, Reply

    final = {"lat": 48.86, "lon": 2.35, "confidence": 0.7, "rationale": "the Paris cluster"}
    script = [
        Reply(text="Stone facades and a wide boulevard.", calls=[("submit_answer", final)]),
        Reply(calls=[("verify_locations", {"candidates": [{"lat": 50.85, "lon": 4.35}]})]),
        Reply(text="Brussels scores lower than Paris, so I keep Paris."),
    ]
    map_file = tmp_path / "chat.html"
    lines = [
        f"/image {photo}",
        "/image",
        "could it be Belgium instead?",
        "/history",
        f"/map {map_file}",
        "/map out.txt",
        "/image /no/such.jpg",
        "/quit",
        "never read",
    ]
    with FakeOpenAI(script) as server:
        monkeypatch.setenv("GEOAGENT_LLM_MODEL", "fake-vl")
        monkeypatch.setenv("GEOAGENT_LLM_BASE_URL", server.base_url)
        res = fake_cli.invoke(app, ["chat"], input="\n".join(lines) + "\n")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert server.violations == [] and len(server.requests) == 3
    assert "Stone facades and a wide boulevard." in out  # the LMM's text, streamed
    assert "- LMM request:" in out and "- verify_locations:" in out  # live steps of the follow-up too
    assert out.count("Brussels scores lower than Paris, so I keep Paris.") == 2  # streamed once, then in /history
    assert "you: could it be Belgium instead?" in out and "usage: /image PATH" in out
    assert map_file.is_file() and "does not end in .html" in out and "image not found" in out
    assert "never read" not in out


def test_locate_at_the_top_k_maximum_reaches_the_real_retrieve_tool(monkeypatch, tmp_path, photo):
    """--top-k above the tool's own bound once turned every photo into the placeholder 0, 0: now the
    CLI, the settings and the retrieve tool share MAX_TOP_K, and the maximum goes through."""
    import agent.api as api
    from retrieval_service.retrieval.settings import MAX_TOP_K
    from tests.tools.conftest import FakeRetriever
    from tools import Services, make_tools

    fake = FakeRetriever()
    real = api.load_agent
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(
        api, "load_agent", lambda settings=None, **kw: real(settings, tools=make_tools(Services(settings, retriever=fake)), **kw)
    )
    res = CliRunner().invoke(app, ["locate", str(photo), "--mode", "retrieval", "--top-k", str(MAX_TOP_K), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.splitlines()[0])
    assert "error" not in row and abs(row["lat"] - PARIS[0]) < 1
    assert [c[1]["k_gallery"] for c in fake.calls if c[0] == "search"] == [MAX_TOP_K]
    over = CliRunner().invoke(app, ["locate", str(photo), "--top-k", str(MAX_TOP_K + 1)])
    assert over.exit_code == 2 and str(MAX_TOP_K) in over.output


def test_a_bad_path_fails_before_any_model_loads(monkeypatch, tmp_path):
    """A missing path was once reported only after ~15 s of model loading."""
    import agent.api as api

    loaded = []
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(api, "load_agent", lambda *a, **kw: loaded.append(1) or pytest.fail("models loaded"))
    res = CliRunner().invoke(app, ["locate", str(tmp_path / "gone.jpg"), str(tmp_path), "--json"])
    assert res.exit_code == 1 and not loaded
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["error"]["type"] for r in rows] == ["ImageLoadError", "ImageLoadError"]
    assert "not found" in rows[0]["error"]["message"] and "is a directory" in rows[1]["error"]["message"]


def test_a_url_that_fails_is_a_failure(fake_cli, photo, tmp_path):
    """A refused/unreachable URL once exited 0 with the placeholder answer 0, 0."""
    url = "http://127.0.0.1:9/photo.jpg"  # loopback: refused by default, before any connection
    res = fake_cli.invoke(app, ["locate", url, str(photo), "--json"])
    assert res.exit_code == 1
    failed, ok = [json.loads(line) for line in res.stdout.splitlines()]
    assert failed["image"] == url and "lat" not in failed and failed["error"]["type"] == "ImageLoadError"
    assert "loopback" in failed["error"]["message"] and "GEOAGENT_ALLOW_PRIVATE_URLS" in failed["error"]["fix"]
    assert ok["lat"] != 0.0 and "error" not in ok


def test_locate_human_output_has_the_probabilities_areas_places_and_exif(fake_cli, exif_dir):
    """Before: neither P(error <= t) nor the search areas, alternatives as bare coordinates with a
    "score" beside a "probability", and the EXIF capture time, camera and altitude never shown."""
    res = fake_cli.invoke(app, ["locate", str(exif_dir / "HTC_Desire.jpg"), "--alternatives", "2"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "confidence:  P(within 25 km) = " in out
    assert "P(error <=): 1 km " in out and "2500 km " in out
    assert "search area: 50% in " in out and "90% in " in out
    alternatives = [line for line in out.splitlines() if line.strip().startswith("alternative")]
    assert alternatives and all("of the probability" in line and "score" not in line for line in alternatives)
    assert any("Japan" in line for line in alternatives), alternatives  # the fake tools' decoy is Tokyo: named
    assert "exif:        taken 2011:05:06 09:59:48 · camera HTC HTC Desire · altitude 217 m" in out


def test_version_and_help_without_type_labels(fake_cli):
    from importlib.metadata import version

    from agent.cli import main

    res = fake_cli.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"geoagent {version('geoagent')}"
    assert main(["--version"]) == 0
    for command in ([], ["locate"], ["chat"], ["models", "download"], ["index", "info"], ["serve"]):
        text = fake_cli.invoke(app, [*command, "--help"]).stdout
        assert "<bool>" not in text and "<str>" not in text, (command, text)
    assert "--map FILE.html" in fake_cli.invoke(app, ["locate", "--help"]).stdout


def test_index_info_describes_the_gallery_once_and_consistently():
    """Before: "collection geoclip_gallery-...: not built" beside "gallery ready: True" (exact search
    needs no collection)."""
    from agent.cli.index import info_lines

    data = {
        "data_dir": "/d",
        "store": {"backend": "embedded", "path": "/d/qdrant"},
        "collections": {"geoclip_gallery-abc": None, "image_database": None},
        "gallery_ready": True,
        "gallery_search": "exact",
        "encoder": "geoclip",
        "image_model": "ViT-L-14",
        "image_pretrained": "openai",
        "device": "cpu",
    }
    text = "\n".join(info_lines(data))
    assert "not built" not in text and "exact search" in text and ": ready" in text
    assert "image database: collection image_database: none yet" in text
    hnsw = "\n".join(info_lines({**data, "gallery_search": "hnsw", "gallery_ready": False}))
    assert "collection geoclip_gallery-abc: not built yet" in hnsw and "(not ready)" in hnsw


def test_locate_workers_run_photos_at_once_and_print_in_order(fake_cli, photo, tmp_path, monkeypatch):
    """--workers 2: two photos are located at the same time (each waits for the other at a barrier,
    so a sequential run would fail them), and the lines keep the inputs' order, failures included."""
    import threading

    from agent.api import GeoAgent

    both = threading.Barrier(2, timeout=20)
    real = GeoAgent.invoke

    def invoke(self, item, **kw):
        both.wait()
        return real(self, item, **kw)

    monkeypatch.setattr(GeoAgent, "invoke", invoke)
    other = tmp_path / "second photo.jpg"
    other.write_bytes(photo.read_bytes())
    missing = tmp_path / "nope.jpg"
    res = fake_cli.invoke(app, ["locate", str(photo), str(missing), str(other), "--json", "--workers", "2"])
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["image"] for r in rows] == [str(photo), str(missing), str(other)]
    assert "error" in rows[1] and all("lat" in r for r in (rows[0], rows[2])), res.stderr
    assert res.exit_code == 1 and "1 of 3 photos failed" in res.stderr
