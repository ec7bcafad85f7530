"""The LMM graphs against a strict OpenAI-compatible fake server on loopback (evals.fake_llm_server):
every request is checked like the OpenAI API checks it (a tool call without its tool message is an
HTTP 400), so each test also asserts that no request broke the protocol."""

from __future__ import annotations

import json

import pytest

from agent import load_agent
from agent.lmm.calls import CallPolicy, LLMFailure, call_lmm
from evals.fake_llm_server import Drop, Fail, FakeOpenAI, Garbage, Hang, Reply, protocol_errors
from tests.agent.fakes import PARIS, make_fake_tools

FINAL = {
    "lat": 48.86,
    "lon": 2.35,
    "confidence": 0.8,
    "place": {"city": "Paris", "country": "France", "country_code": "FR"},
    "rationale": "the Paris cluster, verified",
}


def _agent(settings, server, mode="agent", **kw):
    return load_agent(settings, mode=mode, chat_model=server.chat_model(), tools=make_fake_tools(), retry_backoff_s=0.001, **kw)


def _images(body) -> int:
    return sum(
        1
        for m in body["messages"]
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, dict) and p.get("type") == "image_url"
    )


def test_the_fake_server_refuses_an_unanswered_tool_call_like_the_openai_api():
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}],
            },
            {"role": "user", "content": "again"},
        ]
    }
    assert any("did not have response messages" in m for _, m in protocol_errors(body))
    body["messages"].insert(2, {"role": "tool", "tool_call_id": "c1", "content": "error"})
    assert protocol_errors(body) == []


def test_invalid_json_arguments_are_answered_and_the_model_continues(agent_settings, photo):
    script = [
        Reply(calls=[("retrieve", '{"k": 5, "lat": 48.8'), ("reverse_geocode", {"lat": 48.86, "lon": 2.35})]),
        Reply(calls=[("submit_answer", FINAL)]),
    ]
    with FakeOpenAI(script) as server:
        pred = _agent(agent_settings, server).invoke({"image": str(photo)})
    # the old loop took the reply for a final answer and resent the call unanswered: HTTP 400, policy fallback
    assert server.violations == [] and len(server.requests) == 2
    assert pred.source == "lmm" and (pred.lat, pred.lon) == (48.86, 2.35)
    tool_msgs = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 2
    bad = [m for m in tool_msgs if "not valid JSON" in m["content"]]
    assert len(bad) == 1 and ("Expecting" in bad[0]["content"] or "delimiter" in bad[0]["content"])
    assert any(t.tool == "retrieve" and t.error for t in pred.trace)  # the invalid call is in the trace
    assert any(t.tool == "reverse_geocode" and t.error is None and t.args.get("lat") == 48.86 for t in pred.trace)


def test_invalid_submit_answer_gets_one_repair_round_then_the_policy(agent_settings, photo):
    script = [Reply(calls=[("submit_answer", {**FINAL, "lat": 123})]), Reply(calls=[("submit_answer", '{"lat": ')])]
    with FakeOpenAI(script) as server:
        pred = _agent(agent_settings, server).invoke({"image": str(photo)})
    assert server.violations == [] and len(server.requests) == 2
    first_error = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"][-1]["content"]
    assert "lat" in first_error and "less than or equal to 90" in first_error
    assert pred.source == "fallback" and abs(pred.lat - PARIS[0]) < 0.1
    assert any("malformed final answer after repair" in w for w in pred.warnings)


def test_no_tool_schema_has_an_image_parameter_and_the_photo_is_sent_once(agent_settings, photo):
    script = [
        Reply(calls=[("read_text", {})]),
        Reply(calls=[("segment_scene", {"image": "ignored"})]),
        Reply(calls=[("submit_answer", FINAL)]),
    ]
    with FakeOpenAI(list(script)) as server:
        pred = _agent(agent_settings, server).invoke({"image": str(photo)})
    assert server.violations == [] and pred.source == "lmm"
    for req in server.requests:
        names = [t["function"]["name"] for t in req.body["tools"]]
        assert "submit_answer" in names and "verify_locations" in names
        for t in req.body["tools"]:
            assert "image" not in t["function"]["parameters"].get("properties", {}), t["function"]["name"]
    assert [_images(r.body) for r in server.requests] == [1, 0, 0]  # the old loop sent it every time
    assert "not sent again" in json.dumps(server.requests[1].body["messages"][1])
    once = [r.size for r in server.requests]
    with FakeOpenAI(list(script)) as server:
        _agent(agent_settings.model_copy(update={"llm_resend_photo": True}), server).invoke({"image": str(photo)})
    assert [_images(r.body) for r in server.requests] == [1, 1, 1]
    assert sum(r.size for r in server.requests) > sum(once) + 2 * min(once) // 2


def test_usage_totals_add_up_to_the_per_call_figures(agent_settings, photo):
    script = [Reply(calls=[("read_text", {})], usage=(1000, 20)), Reply(calls=[("submit_answer", FINAL)], usage=(1200, 60))]
    with FakeOpenAI(script) as server:
        pred = _agent(agent_settings, server).invoke({"image": str(photo)})
    lmm = [t for t in pred.trace if t.tool == "lmm"]
    assert (pred.usage.calls, pred.usage.input_tokens, pred.usage.output_tokens) == (2, 2200, 80)
    assert sum(t.tokens["input_tokens"] for t in lmm) == 2200 and sum(t.tokens["output_tokens"] for t in lmm) == 80
    assert pred.usage.seconds > 0


def test_streaming_keeps_usage_and_yields_tokens(agent_settings, photo):
    script = [
        Reply(text="I see a river and stone bridges", calls=[("read_text", {})], usage=(500, 10)),
        Reply(calls=[("submit_answer", FINAL)], usage=(600, 30)),
    ]
    with FakeOpenAI(script) as server:
        events = list(_agent(agent_settings, server).stream({"image": str(photo)}))
    assert all(r.body.get("stream") for r in server.requests) and server.violations == []
    tokens = "".join(e["text"] for e in events if e["type"] == "token")
    assert "stone bridges" in tokens
    pred = [e for e in events if e["type"] == "prediction"][-1]["prediction"]
    assert (pred.usage.calls, pred.usage.input_tokens, pred.usage.output_tokens) == (2, 1100, 40)


def test_a_never_answering_model_makes_at_most_max_steps_plus_two_requests(agent_settings, photo):
    with FakeOpenAI(lambda body: Reply(calls=[("read_exif", '{"broken')])) as server:
        pred = _agent(agent_settings, server).invoke({"image": str(photo)})
    assert len(server.requests) == agent_settings.max_steps + 2 and server.violations == []
    assert pred.source == "fallback" and pred.usage.calls == agent_settings.max_steps + 2


def test_retry_after_is_honoured_and_garbage_bodies_are_retried():
    slept: list[float] = []
    policy = CallPolicy(retries=3, initial_s=0.001, max_wait_s=5.0, sleep=slept.append)
    script = [Fail(429, "slow down", {"Retry-After": "2"}), Garbage(), Fail(503, "busy", {"retry-after-ms": "300"}), Reply("ok")]
    with FakeOpenAI(script) as server:
        result = call_lmm(server.chat_model(), [("user", "hi")], policy)
    assert result.reply.content == "ok" and len(server.requests) == 3 + 1
    assert slept[0] == 2.0 and slept[2] == pytest.approx(0.3) and slept[1] < 0.1
    assert [e.error is None for e in result.entries] == [False, False, False, True] and result.usage.calls == 4
    with FakeOpenAI([Fail(429, "slow down", {"Retry-After": "600"}), Reply("ok")]) as server:
        call_lmm(server.chat_model(), [("user", "hi")], CallPolicy(retries=1, max_wait_s=1.5, sleep=slept.append))
    assert slept[-1] == 1.5  # capped by llm_retry_max_s
    with FakeOpenAI([Fail(400, "bad request"), Reply("unused")]) as server, pytest.raises(LLMFailure):
        call_lmm(server.chat_model(), [("user", "hi")], policy)
    assert len(server.requests) == 1  # a client error is not retried


@pytest.mark.parametrize("fault", [Fail(503), Drop(), Hang(0.6)], ids=["http503", "dropped", "hung"])
def test_a_dead_endpoint_over_a_batch_trips_the_breaker(agent_settings, tmp_path, fault):
    from PIL import Image

    photos = []
    for i in range(5):
        photos.append(tmp_path / f"p{i}.jpg")
        Image.new("RGB", (64, 48), (10 * i, 90, 200)).save(photos[-1])
    settings = agent_settings.model_copy(update={"llm_breaker_failures": 3, "llm_max_retries": 2})
    with FakeOpenAI(lambda body: fault) as server:
        agent = load_agent(
            settings, mode="agent", chat_model=server.chat_model(timeout=0.3), tools=make_fake_tools(), retry_backoff_s=0.001
        )
        preds = agent.batch([str(p) for p in photos], max_workers=1)
    # before: 3 attempts per photo, nothing shared (15 requests, ~12 minutes per photo at a 60 s timeout)
    assert len(server.requests) <= settings.llm_breaker_failures + 1
    assert all(not isinstance(p, Exception) and p.source != "lmm" for p in preds)
    assert all(any("fell back to the no-LMM policy" in w for w in p.warnings) for p in preds)
    assert any("circuit breaker is open" in w for w in preds[-1].warnings)
    assert agent.breaker.state == "open" and agent.breaker.trips == 1


def test_rag_mode_shares_the_breaker_across_prompts_and_photos(agent_settings, tmp_path):
    from PIL import Image

    photos = []
    for i in range(3):
        photos.append(tmp_path / f"r{i}.jpg")
        Image.new("RGB", (64, 48), (10 * i, 90, 200)).save(photos[-1])
    settings = agent_settings.model_copy(update={"llm_breaker_failures": 3, "rag_samples": 3})
    with FakeOpenAI(lambda body: Fail(503)) as server:
        agent = _agent(settings, server, mode="rag")
        preds = agent.batch([str(p) for p in photos], max_workers=1)
    # before: 4 prompts x 3 attempts per photo, nothing shared; now 12 prompts x 3 photos make 3 requests
    assert len(server.requests) <= settings.llm_breaker_failures + 1
    assert all(any("every RAG prompt failed" in w for w in p.warnings) for p in preds)
