"""The LMM factory, retries, final-answer parsing, prompts and the policy's decision rule."""

from __future__ import annotations

import pytest

from agent import policy
from agent.final_answer import MalformedAnswer, parse_coordinates, parse_final_answer
from agent.llm import LLMFailure, invoke_with_retries, make_chat_model
from retrieval_service.errors import ConfigError
from tests.agent.fakes import ScriptedChatModel


def test_factory_builds_an_openai_compatible_client(agent_settings):
    s = agent_settings.model_copy(update={"llm_model": "qwen2.5-vl", "llm_base_url": "http://localhost:8000/v1",
                                          "llm_timeout_s": 12.0})
    model = make_chat_model(s)
    assert type(model).__name__ == "ChatOpenAI"
    assert model.model_name == "qwen2.5-vl" and model.openai_api_base == "http://localhost:8000/v1"
    assert model.request_timeout == 12.0 and model.max_retries == 0


def test_factory_errors_name_the_fix(agent_settings):
    with pytest.raises(ConfigError, match="GEOAGENT_LLM_MODEL"):
        make_chat_model(agent_settings)
    with pytest.raises(ConfigError, match="GEOAGENT_LLM_API_KEY"):
        make_chat_model(agent_settings.model_copy(update={"llm_model": "gpt-4o"}))


def test_load_agent_picks_agent_mode_when_an_lmm_is_configured(agent_settings):
    from agent import load_agent
    from tests.agent.fakes import make_fake_tools

    s = agent_settings.model_copy(update={"llm_model": "m", "llm_base_url": "http://127.0.0.1:9/v1"})
    assert load_agent(s, tools=make_fake_tools()).mode == "agent"
    assert load_agent(agent_settings, tools=make_fake_tools()).mode == "policy"


def test_retries_with_backoff_then_success_records_every_attempt():
    import openai

    model = ScriptedChatModel(script=[openai.APITimeoutError(request=None), ConnectionError("reset"), "ok"])
    reply, entries = invoke_with_retries(model, ["hi"], retries=2, backoff_s=0.001)
    assert reply.content == "ok" and [e.get("error") is None for e in entries] == [False, False, True]
    model = ScriptedChatModel(script=[TimeoutError("t")] * 2)
    with pytest.raises(LLMFailure) as info:
        invoke_with_retries(model, ["hi"], retries=1, backoff_s=0.001)
    assert len(info.value.entries) == 2


def test_final_answer_parsing():
    ok = parse_final_answer('blah {"lat": 1, "lon": 2, "confidence": 0.5, "rationale": "r"} tail')
    assert (ok.lat, ok.lon, ok.confidence) == (1, 2, 0.5)
    for bad, why in (("no json here", "no JSON"), ('{"lat": 91, "lon": 0, "confidence": 1, "rationale": "r"}', "lat"),
                     ('{"lat": 1, "lon": 2, "confidence": 0.5}', "rationale"), ('{"lat": "x"', "no JSON")):
        with pytest.raises(MalformedAnswer, match=why):
            parse_final_answer(bad)
    assert parse_coordinates('{"lat": 10, "lon": 20} and {"lat": 100, "lon": 0}') == [(10.0, 20.0)]


def test_prompts_load_and_render():
    from agent.prompts import load_prompt, render

    assert "verify_locations" in render("system", max_steps=7) and "7 tool-calling rounds" in render("system", max_steps=7)
    assert '"lat"' in render("final_answer")
    assert "dissimilar" in render("rag_neighbours", similar="[[1,2]]", dissimilar="[[3,4]]")
    with pytest.raises(ConfigError, match="missing"):
        load_prompt("no_such_prompt")


def test_policy_prefers_cluster_support_and_verification():
    cands = ([{"lat": 48.85 + 0.01 * i, "lon": 2.35, "score": 0.3, "source": "gallery"} for i in range(4)]
             + [{"lat": 35.7, "lon": 139.7, "score": 0.5, "source": "gallery"}])
    clusters = [{"lat": 48.865, "lon": 2.35, "support": 4, "score_mass": 1.2, "radius_km": 3}]
    options = policy.build_options(cands, clusters)
    policy.attach_verification(options, {"ranked": [{"lat": o.lat, "lon": o.lon, "score": 0.2} for o in options]})
    d = policy.decide(options, cands)
    assert d.source == "cluster" and abs(d.lat - 48.865) < 1e-9 and 0.5 < d.confidence <= 0.95
    assert any(abs(a.lat - 35.7) < 1e-9 for a in d.alternatives)
    # a small verification lead does not overturn cluster support ...
    ranked = [{"lat": o.lat, "lon": o.lon, "score": 0.21 if o.lat == 35.7 else 0.20} for o in options]
    policy.attach_verification(options, {"ranked": ranked})
    assert policy.decide(options, cands).lat == 48.865
    # ... a large one does (0.6 * 0.29 + 0.4 > 0.6 * 0.71), and the confidence stays low
    ranked = [{"lat": o.lat, "lon": o.lon, "score": 0.6 if o.lat == 35.7 else 0.1} for o in options]
    policy.attach_verification(options, {"ranked": ranked})
    d2 = policy.decide(options, cands)
    assert d2.lat == 35.7 and d2.confidence < 0.3
    assert policy.decide([], cands) is None
    assert policy.support_share(0, 0, []) == 0.0
