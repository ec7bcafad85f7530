"""The LMM loop driven by a scripted fake chat model: happy path and failure paths."""

from __future__ import annotations

import base64
import io
import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from PIL import Image

from agent import load_agent
from tests.agent.fakes import PARIS, ScriptedChatModel, ScriptExhausted, call, make_fake_tools, propose, submit

FINAL = {
    "lat": 48.86,
    "lon": 2.35,
    "confidence": 0.8,
    "place": {"city": "Paris", "country": "France", "country_code": "FR"},
    "alternatives": [{"lat": 45.76, "lon": 4.84, "score": 0.1}],
    "rationale": "Cluster of 5 around Paris; zoomed retrieval agrees; reverse geocode names Paris.",
}


def _agent(settings, script, mode="agent", **kw):
    model = ScriptedChatModel(script=script)
    tools_log: list = []
    agent = load_agent(
        settings,
        mode=mode,
        chat_model=model,
        tools=make_fake_tools(calls=tools_log, **kw.pop("tool_kw", {})),
        retry_backoff_s=0.001,
        **kw,
    )
    return agent, model, tools_log


def test_scripted_loop_retrieve_cluster_zoom_geocode_answer(agent_settings, photo):
    script = [
        AIMessage("", tool_calls=[call("retrieve", {"image": "photo", "k": 5}, "c1")]),
        AIMessage(
            "",
            tool_calls=[
                call(
                    "cluster_candidates",
                    {"candidates": [{"lat": PARIS[0], "lon": PARIS[1], "score": 0.4}, {"lat": 48.87, "lon": 2.36, "score": 0.3}]},
                    "c2",
                )
            ],
        ),
        AIMessage("", tool_calls=[call("retrieve", {"image": "photo", "lat": PARIS[0], "lon": PARIS[1], "radius_km": 25}, "c3")]),
        AIMessage(
            "",
            tool_calls=[call("reverse_geocode", {"lat": 48.86, "lon": 2.35}, "c4")],
            usage_metadata={"input_tokens": 100, "output_tokens": 10, "total_tokens": 110},
        ),
        submit(FINAL),
    ]
    agent, model, tools_log = _agent(agent_settings, script)
    pred = agent.invoke({"image": str(photo)})
    assert model.remaining == 0
    assert (pred.lat, pred.lon, pred.source, pred.mode) == (48.86, 2.35, "lmm", "agent")
    # confidence is the probability model's P(error <= 25 km), not the LMM's own 0.8
    assert pred.confidence == pred.probabilities["25"] and not pred.calibrated and set(pred.search_area_km2) == {"50", "90"}
    assert pred.place.city == "Paris" and pred.place.country_code == "FR"
    assert pred.rationale.startswith("Cluster of 5")
    # the LMM's own alternatives first, then the probability model's modes
    assert (pred.alternatives[0].lat, pred.alternatives[0].lon) == (45.76, 4.84)
    tools = [t.tool for t in pred.trace]
    # observe (exif, retrieve, cluster), then lmm/tool rounds, then lmm answer, then the place lookup
    assert tools[:3] == ["read_exif", "retrieve", "cluster_candidates"]
    assert tools[3:12] == ["lmm", "retrieve", "lmm", "cluster_candidates", "lmm", "retrieve", "lmm", "reverse_geocode", "lmm"]
    assert pred.trace[9].tokens == {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110}
    zoom = [kw for name, kw in tools_log if name == "retrieve" and kw.get("lat") is not None]
    assert zoom and zoom[0]["radius_km"] == 25
    # the image argument was replaced by the real photo for every tool call
    assert all(kw["image"] == str(photo) for name, kw in tools_log if "image" in kw)
    # zoomed-in candidates were folded into the state
    assert any(abs(c.lat - PARIS[0] - 0.01) < 1e-6 for c in pred.candidates)
    # messages: system, user, 5 AI, 5 tool (the answer's receipt too); no image data anywhere
    roles = [m["role"] for m in pred.messages]
    assert roles[:2] == ["system", "human"] and roles.count("ai") == 5 and roles.count("tool") == 5
    assert "base64" not in json.dumps(pred.messages)

    # the model saw the photo as an image block in the first request only (the default)
    def images(request):
        first_user = next(m for m in request if isinstance(m, HumanMessage))
        return (
            [b for b in first_user.content if isinstance(b, dict) and b.get("type") == "image"]
            if isinstance(first_user.content, list)
            else []
        )

    assert len(images(model.received[0])) == 1 and all(not images(r) for r in model.received[1:])
    assert "verify_locations" in model.offered[0] and "submit_answer" in model.offered[0]


def test_graph_state_holds_reference_not_bytes(agent_settings, photo):
    agent, _, _ = _agent(agent_settings, [submit(FINAL)])
    from agent.graphs.llm_loop import recursion_limit

    state, ctx, cfg = agent._prepare(photo.read_bytes())
    assert state["photo"].ref.startswith("sha256:") and cfg["recursion_limit"] == recursion_limit(agent_settings.max_steps)
    assert set(state["photo"].model_dump()) == {"ref", "path", "sha256", "meta"}  # a handle: no pixels, no bytes
    out = agent.graph.invoke(state, config=cfg, context=ctx)
    for msg in out["messages"]:
        assert "base64" not in json.dumps(msg.content, default=str)
    assert out["prediction"].image == state["photo"].ref


def test_tool_error_reaches_lmm_as_message(agent_settings, photo):
    def broken(**kw):
        raise RuntimeError("segmenter exploded")

    script = [AIMessage("", tool_calls=[call("segment_scene", {"image": "photo"}, "s1")]), submit(FINAL)]
    agent, model, _ = _agent(agent_settings, script, tool_kw={"overrides": {"segment_scene": broken}})
    pred = agent.invoke(str(photo))
    tool_msgs = [m for m in model.received[1] if isinstance(m, ToolMessage)]
    assert len(tool_msgs) == 1 and "segmenter exploded" in json.loads(tool_msgs[0].content)["error"]
    entry = next(t for t in pred.trace if t.tool == "segment_scene")
    assert entry.error and "segmenter exploded" in entry.error
    assert pred.source == "lmm"


def test_unknown_tool_name_is_reported_to_the_lmm(agent_settings, photo):
    script = [AIMessage("", tool_calls=[call("google_maps", {"q": "eiffel"}, "u1")]), submit(FINAL)]
    agent, model, _ = _agent(agent_settings, script)
    pred = agent.invoke(str(photo))
    msg = next(m for m in model.received[1] if isinstance(m, ToolMessage))
    assert msg.status == "error" and "not a valid tool" in msg.content
    assert next(t for t in pred.trace if t.tool == "google_maps").error
    assert pred.lat == FINAL["lat"]


def test_budget_runs_out_mid_loop(agent_settings, photo):
    # max_steps=4: four tool rounds run; then only submit_answer is offered, a fifth round is answered
    # "not run" (one repair round) and the answer comes
    loop = [AIMessage("", tool_calls=[call("reverse_geocode", {"lat": 48.0 + i, "lon": 2.0}, f"b{i}")]) for i in range(5)]
    agent, model, tools_log = _agent(agent_settings, [*loop, submit(FINAL)])
    pred = agent.invoke(str(photo))
    assert sum(1 for name, _ in tools_log if name == "reverse_geocode") == 4 + 1  # 4 rounds + the final place lookup
    assert any("budget" in w for w in pred.warnings)
    assert model.offered[4] == ["submit_answer"] and model.offered[5] == ["submit_answer"]
    last_call = model.received[-1]
    assert any(isinstance(m, HumanMessage) and "budget" in m.content for m in last_call)
    not_run = [m for m in last_call if isinstance(m, ToolMessage) and m.tool_call_id == "b4"]
    assert len(not_run) == 1 and "budget" in not_run[0].content
    assert pred.source == "lmm" and model.remaining == 0


def test_a_run_that_never_answers_makes_at_most_max_steps_plus_two_requests(agent_settings, photo):
    loop = [AIMessage("", tool_calls=[call("read_text", {}, f"t{i}")]) for i in range(10)]
    agent, model, _ = _agent(agent_settings, loop)
    pred = agent.invoke(str(photo))  # budget demand answered with tool calls twice -> fallback
    assert len(model.received) == agent_settings.max_steps + 2 and model.remaining == 10 - (agent_settings.max_steps + 2)
    assert pred.source == "fallback"
    assert abs(pred.lat - PARIS[0]) < 0.1 and abs(pred.lon - PARIS[1]) < 0.1
    assert pred.usage.calls == agent_settings.max_steps + 2


def test_malformed_final_answer_is_repaired_through_its_tool_message(agent_settings, photo):
    bad = {**FINAL, "lat": 123}
    agent, model, _ = _agent(agent_settings, [submit(bad, "a1"), submit(FINAL, "a2")])
    pred = agent.invoke(str(photo))
    assert pred.source == "lmm" and pred.lat == FINAL["lat"]
    repair = model.received[1][-1]
    assert isinstance(repair, ToolMessage) and repair.tool_call_id == "a1" and repair.status == "error"
    assert "lat" in repair.content and "submit_answer again" in repair.content
    assert any("repair" in w for w in pred.warnings)


def test_first_reply_notes_are_accepted_once(agent_settings, photo):
    agent, model, _ = _agent(agent_settings, ["I see palm trees and a red-earth road.", submit(FINAL)])
    pred = agent.invoke(str(photo))
    assert pred.source == "lmm" and not any("repair" in w for w in pred.warnings)
    assert isinstance(model.received[1][-1], HumanMessage) and "submit_answer" in model.received[1][-1].content


def test_a_text_answer_is_not_scanned_for_json(agent_settings, photo):
    # the old loop took JSON out of free text; now only submit_answer answers, so text gets a repair
    script = [
        AIMessage("", tool_calls=[call("read_text", {}, "t1")]),
        AIMessage(json.dumps(FINAL)),
        submit({**FINAL, "lat": 40.0}),
    ]
    agent, model, _ = _agent(agent_settings, script)
    pred = agent.invoke(str(photo))
    assert pred.lat == 40.0 and pred.source == "lmm"
    repair = model.received[2][-1]
    assert isinstance(repair, HumanMessage) and "submit_answer" in repair.content


def test_malformed_twice_falls_back_to_best_verified_candidate(agent_settings, photo):
    agent, model, _ = _agent(agent_settings, ["I see Haussmann facades.", "I think it is France.", "Definitely France!"])
    pred = agent.invoke(str(photo))
    assert pred.source == "fallback" and model.remaining == 0
    assert abs(pred.lat - PARIS[0]) < 0.1  # Paris cluster + verification beat the Tokyo decoy
    assert any(t.tool == "verify_locations" for t in pred.trace)
    assert any("after repair" in w for w in pred.warnings)


def test_lmm_timeout_retries_then_policy_fallback(agent_settings, photo):
    agent, model, _ = _agent(agent_settings, [TimeoutError("read timed out")] * 3)
    pred = agent.invoke(str(photo))
    lmm = [t for t in pred.trace if t.tool == "lmm"]
    assert len(lmm) == 3 and all("TimeoutError" in t.error for t in lmm)  # 1 + llm_max_retries=2
    assert model.remaining == 0
    assert any("fell back to the no-LMM policy" in w for w in pred.warnings)
    assert pred.source in ("cluster", "gallery", "ocr") and abs(pred.lat - PARIS[0]) < 0.1
    assert "LMM failed" in pred.rationale
    assert {"read_text", "segment_scene", "verify_locations"} <= {t.tool for t in pred.trace}


def test_non_retryable_lmm_error_falls_back_at_once(agent_settings, photo):
    agent, model, _ = _agent(agent_settings, [ValueError("bad request"), AIMessage("unused")])
    pred = agent.invoke(str(photo))
    assert model.remaining == 1 and len([t for t in pred.trace if t.tool == "lmm"]) == 1
    assert any("fell back" in w for w in pred.warnings)


def test_scripted_model_fails_loudly_when_script_runs_out():
    model = ScriptedChatModel(script=["one"])
    assert model.invoke("hi").content == "one"
    with pytest.raises(ScriptExhausted):
        model.invoke("again")


def test_image_content_block_is_valid(photo, tmp_path):
    from agent.lmm.images import image_content_block
    from retrieval_service.core.photo import Photo

    block = image_content_block(Photo.resolve(photo, tmp_path))
    assert block["type"] == "image" and block["mime_type"] == "image/jpeg"
    img = Image.open(io.BytesIO(base64.b64decode(block["base64"], validate=True)))
    assert img.format == "JPEG" and max(img.size) <= 1024 and img.size == (1024, 768)
    Image.new("RGB", (300, 200)).save(tmp_path / "small.png")
    img2 = Image.open(
        io.BytesIO(base64.b64decode(image_content_block(Photo.resolve(tmp_path / "small.png", tmp_path))["base64"]))
    )
    assert img2.size == (300, 200)


def test_rag_mode_geo_diversification(agent_settings, photo):
    # 4 prompts (0/5/10/15 neighbours) x 1 sample; one reply unusable
    script = [propose(48.85, 2.34), "no idea", propose(35.6, 139.6), propose(48.9, 2.4)]
    agent, model, tools_log = _agent(agent_settings, script, mode="rag", tool_kw={})
    pred = agent.invoke(str(photo))
    assert model.remaining == 0 and pred.mode == "rag"
    texts = [m[0].content[0]["text"] for m in model.received]
    assert "similar photos" not in texts[0] and "similar photos" in texts[1]
    assert texts[3].count("[") > texts[1].count("[")  # 15 neighbours listed, more than 5
    assert any(name == "retrieve" and kw.get("dissimilar") == 15 for name, kw in tools_log)
    assert abs(pred.lat - PARIS[0]) < 0.1 and pred.source in ("lmm", "gallery")
    assert sum(1 for c in pred.candidates if c.source == "lmm") == 3
    assert any("1 of 4 RAG replies were unparseable" in w for w in pred.warnings)
    assert pred.usage.calls == 4


def test_agent_mode_without_lmm_is_a_config_error(agent_settings):
    from retrieval_service.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"needs an LMM|no LMM"):
        load_agent(agent_settings, mode="agent", tools=make_fake_tools())
    with pytest.raises(ConfigError, match="unknown mode"):
        load_agent(agent_settings, mode="magic", tools=make_fake_tools())


def test_an_answer_every_tool_contradicts_gets_a_warning(agent_settings, photo):
    far = {**FINAL, "lat": -34.6, "lon": -58.4, "place": {"city": "Buenos Aires"}, "confidence": 0.9}
    agent, _, _ = _agent(agent_settings, [submit(far)])
    pred = agent.invoke(str(photo))
    # before: accepted without a word at confidence 0.9
    assert (pred.lat, pred.lon, pred.source) == (-34.6, -58.4, "lmm")
    warning = [w for w in pred.warnings if "contradicted by the evidence" in w]
    assert len(warning) == 1 and "no retrieval candidate lies within 200 km" in warning[0] and "worst" in warning[0]
    assert any(e.kind == "answer_check" for e in pred.evidence)
    far_confidence = pred.confidence  # from the probability model, not the LMM's own 0.9
    assert far_confidence < 0.9
    agent, _, _ = _agent(agent_settings, [submit(FINAL)])
    pred = agent.invoke(str(photo))  # the Paris answer agrees with the cluster and verification
    assert not any("contradicted" in w for w in pred.warnings) and pred.confidence > far_confidence
    assert not any(e.kind == "answer_check" for e in pred.evidence)


def test_a_large_jpeg_is_decoded_scaled_and_upright(tmp_path):
    from agent.lmm.images import image_content_block
    from retrieval_service.core.photo import Photo

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the photo is upright when turned 90 degrees
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(tmp_path / "big.jpg", exif=exif)
    img = Image.open(io.BytesIO(base64.b64decode(image_content_block(Photo.resolve(tmp_path / "big.jpg", tmp_path))["base64"])))
    assert img.size == (768, 1024)
