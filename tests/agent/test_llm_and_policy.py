"""The LMM factory, retries, final-answer parsing, prompts and the policy's decision rule."""

from __future__ import annotations

import pytest

from agent.decision import rules
from agent.lmm.answer import MalformedAnswer, parse_coordinates, parse_final_answer
from agent.lmm.calls import LLMFailure, invoke_with_retries
from agent.lmm.factory import make_chat_model
from retrieval_service.core.types import Candidate, Verification
from retrieval_service.evidence.clustering import Cluster
from retrieval_service.core.errors import ConfigError
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
    assert reply.content == "ok" and [e.error is None for e in entries] == [False, False, True]
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


def _verified(options: list[Candidate], score) -> list[Candidate]:
    return rules.attach_verification(options, Verification(ranked=[
        Candidate(lat=o.lat, lon=o.lon, score=score(o), source="lmm") for o in options]))


def test_policy_answers_the_most_probable_place():
    """The policy's answer is the mode of the probability model: four gallery points holding 60% of
    GeoCLIP's probability around Paris beat one holding 30% in Tokyo, which stays an alternative;
    verification (a re-statement of the gallery scores) does not move the answer."""
    cands = ([Candidate(lat=48.85 + 0.01 * i, lon=2.35, score=0.3, probability=0.15, source="gallery") for i in range(4)]
             + [Candidate(lat=35.7, lon=139.7, score=0.5, probability=0.3, source="gallery")])
    clusters = [Cluster(lat=48.865, lon=2.35, support=4, score_mass=1.2, radius_km=3, members=[0, 1, 2, 3])]
    options = rules.build_options(cands, clusters)
    d = rules.choose(_verified(options, lambda o: 0.2), cands)
    assert abs(d.chosen.lat - 48.865) < 0.01 and abs(d.chosen.lon - 2.35) < 0.01 and 0.1 < d.confidence < 0.6
    assert any(abs(a.lat - 35.7) < 0.01 for a in d.alternatives)
    d2 = rules.choose(_verified(options, lambda o: 0.6 if o.lat == 35.7 else 0.1), cands)
    assert (d2.chosen.lat, d2.confidence) == (d.chosen.lat, d.confidence)
    assert rules.choose([], []) is None
    assert rules.support_share(0, 0, []) == 0.0
