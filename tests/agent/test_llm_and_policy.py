"""The LMM factory, retries, final-answer parsing, prompts and the policy's decision rule."""

from __future__ import annotations

import pytest

from agent.decision import rules
from agent.decision.sources import build_mixture
from agent.lmm.answer import FinalAnswer, InvalidAnswer, submit_answer_tool, validate_args
from agent.lmm.calls import CallPolicy, LLMFailure, call_lmm
from agent.lmm.factory import make_chat_model
from retrieval_service.core.errors import ConfigError
from retrieval_service.core.types import Candidate, Verification
from retrieval_service.evidence.clustering import Cluster
from tests.agent.fakes import ScriptedChatModel


def test_factory_builds_an_openai_compatible_client(agent_settings):
    s = agent_settings.model_copy(
        update={"llm_model": "qwen2.5-vl", "llm_base_url": "http://localhost:8000/v1", "llm_timeout_s": 12.0}
    )
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
    import httpx
    import openai

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")  # newer openai reads its headers
    model = ScriptedChatModel(script=[openai.APITimeoutError(request=request), ConnectionError("reset"), "ok"])
    result = call_lmm(model, ["hi"], CallPolicy(retries=2, initial_s=0.001, max_wait_s=0.01))
    assert result.reply.content == "ok" and [e.error is None for e in result.entries] == [False, False, True]
    assert result.usage.calls == 3
    model = ScriptedChatModel(script=[TimeoutError("t")] * 2)
    with pytest.raises(LLMFailure) as info:
        call_lmm(model, ["hi"], CallPolicy(retries=1, initial_s=0.001, max_wait_s=0.01))
    assert len(info.value.entries) == 2 and info.value.usage.calls == 2


def test_final_answer_schema_names_each_problem():
    ok = validate_args(FinalAnswer, {"lat": 1, "lon": 2, "confidence": 0.5, "rationale": "r"})
    assert (ok.lat, ok.lon, ok.confidence) == (1, 2, 0.5)
    for bad, why in (
        ({"lat": 91, "lon": 0, "confidence": 1, "rationale": "r"}, "lat"),
        ({"lat": 1, "lon": 2, "confidence": 0.5}, "rationale"),
        ({"lat": "x"}, "lat"),
    ):
        with pytest.raises(InvalidAnswer, match=why):
            validate_args(FinalAnswer, bad)
    params = submit_answer_tool().tool_call_schema.model_json_schema()["properties"]
    assert {"lat", "lon", "confidence", "place", "alternatives", "rationale"} <= set(params)


def test_prompts_load_and_render():
    from agent.prompts import load_prompt, render

    system = render("system", max_steps=7, photo_note="")
    assert "verify_locations" in system and "7 tool-calling rounds" in system and "submit_answer" in system
    assert "submit_answer" in render("final_answer")
    shown = render("rag_neighbours", similar="[[1,2,0.9]]", dissimilar="[[3,4,-0.1]]", gallery="[[5,6,0.2]]", gallery_value="p")
    assert "dissimilar" in shown and "GPS gallery" in shown and not shown.startswith("#")
    from agent.prompts import _read

    # the source notes (G3, Img2Loc) are in the file, never in what a model is sent
    assert "G3" in _read("rag_candidates") and "Img2Loc" in _read("rag_candidates")
    assert "G3" not in render("rag_candidates", neighbours="") and "#" not in render("rag_candidates", neighbours="")
    with pytest.raises(ConfigError, match="missing"):
        load_prompt("no_such_prompt")


def _verified(options: list[Candidate], score) -> list[Candidate]:
    return rules.attach_verification(
        options, Verification(ranked=[Candidate(lat=o.lat, lon=o.lon, score=score(o), source="lmm") for o in options])
    )


def test_policy_answers_the_most_probable_place():
    """The policy's answer is the mode of the probability model: four gallery points holding 60% of
    GeoCLIP's probability around Paris beat one holding 30% in Tokyo, which stays an alternative;
    verification (a re-statement of the gallery scores) does not move the answer."""
    cands = [Candidate(lat=48.85 + 0.01 * i, lon=2.35, score=0.3, probability=0.15, source="gallery") for i in range(4)] + [
        Candidate(lat=35.7, lon=139.7, score=0.5, probability=0.3, source="gallery")
    ]
    clusters = [Cluster(lat=48.865, lon=2.35, support=4, score_mass=1.2, radius_km=3, members=[0, 1, 2, 3])]
    mixture = build_mixture(cands)
    options = rules.build_options(cands, clusters, support=mixture)
    d = rules.choose(_verified(options, lambda o: 0.2), mixture)
    assert abs(d.chosen.lat - 48.865) < 0.01 and abs(d.chosen.lon - 2.35) < 0.01 and 0.1 < d.confidence < 0.6
    assert any(abs(a.lat - 35.7) < 0.01 for a in d.alternatives)
    d2 = rules.choose(_verified(options, lambda o: 0.6 if o.lat == 35.7 else 0.1), mixture)
    assert (d2.chosen.lat, d2.confidence) == (d.chosen.lat, d.confidence)
    assert rules.choose([], build_mixture([])) is None
    assert rules.support_within(build_mixture([]), 0, 0) == 0.0


def test_breaker_opens_after_n_failures_and_half_opens_after_reset():
    from agent.lmm.breaker import CircuitBreaker

    now = [0.0]
    breaker = CircuitBreaker(failures=2, reset_s=10.0, clock=lambda: now[0])
    breaker.failure("a")
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure("b")
    assert breaker.state == "open" and not breaker.allow() and "2 consecutive" in breaker.describe()
    now[0] = 10.5
    assert breaker.allow() and not breaker.allow()  # one trial request at a time
    breaker.failure("c")
    assert breaker.state == "open" and breaker.trips == 2
    now[0] = 21.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_per_photo_call_limit_stops_the_lmm(agent_settings, photo):
    from langchain_core.messages import AIMessage

    from agent import load_agent
    from tests.agent.fakes import call, make_fake_tools

    settings = agent_settings.model_copy(update={"llm_max_calls_per_photo": 2, "max_steps": 10})
    model = ScriptedChatModel(script=[AIMessage("", tool_calls=[call("read_text", {}, f"t{i}")]) for i in range(5)])
    agent = load_agent(settings, mode="agent", chat_model=model, tools=make_fake_tools(), retry_backoff_s=0.001)
    pred = agent.invoke(str(photo))
    assert len(model.received) == 2 and pred.usage.calls == 2 and pred.source != "lmm"
    assert any("limit of 2 LMM requests" in w and "fell back" in w for w in pred.warnings)
    assert agent.breaker.state == "closed"  # a limit is not an endpoint failure


def test_rag_vote_groups_proposals_by_place():
    from agent.decision.sources import Mixtures
    from agent.graphs.rag import vote

    proposals = [Candidate(lat=48.85 + d, lon=2.35, score=0.0, source="lmm") for d in (0.0, 0.05, 0.1)]
    proposals.append(Candidate(lat=35.68, lon=139.65, score=0.0, source="lmm"))
    voted = vote(proposals, Mixtures())
    assert [v.votes for v in voted] == [3, 1] and voted[0].score == 0.75 and abs(voted[0].lat - 48.9) < 0.1
    assert vote([], Mixtures()) == []


def test_factory_provider_prefix_and_missing_packages(agent_settings):
    import importlib.util

    from agent.lmm.factory import split_model_name

    assert split_model_name("anthropic:claude-x", "openai") == ("anthropic", "claude-x")
    assert split_model_name("qwen2.5-vl:7b", "openai") == ("openai", "qwen2.5-vl:7b")  # not a provider prefix
    with pytest.raises(ConfigError, match="unknown LMM provider"):
        make_chat_model(agent_settings.model_copy(update={"llm_model": "m", "llm_provider": "acme"}))
    if importlib.util.find_spec("langchain_anthropic") is None:
        with pytest.raises(ConfigError, match="langchain-anthropic") as info:
            make_chat_model(agent_settings.model_copy(update={"llm_model": "anthropic:claude-x"}))
        assert "pip install langchain-anthropic" in info.value.hint


def test_per_photo_token_limit_stops_the_lmm(agent_settings, photo):
    from langchain_core.messages import AIMessage

    from agent import load_agent
    from tests.agent.fakes import call, make_fake_tools

    settings = agent_settings.model_copy(update={"llm_max_tokens_per_photo": 1500, "max_steps": 10})
    usage = {"input_tokens": 900, "output_tokens": 10, "total_tokens": 910}
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call("read_text", {}, f"t{i}")], usage_metadata=usage) for i in range(5)]
    )
    agent = load_agent(settings, mode="agent", chat_model=model, tools=make_fake_tools(), retry_backoff_s=0.001)
    pred = agent.invoke(str(photo))
    assert len(model.received) == 2 and pred.usage.input_tokens == 1800
    assert any("limit of 1500 LMM tokens" in w for w in pred.warnings)


def test_chat_display_names_the_running_step_and_prints_the_stream_once():
    import io

    from rich.console import Console

    from agent.cli.chat import Display

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    display = Display(console)
    with display.run():
        display({"type": "tool_start", "tool": "verify_locations"})
        assert display.step == "running verify_locations..."
        display({"type": "token", "node": "reason", "text": "Paris, "})
        display({"type": "token", "node": "reason", "text": "not Brussels."})
    assert display.streamed == "Paris, not Brussels." and display.already_shown("Paris, not Brussels.")
    after_live = out.getvalue().rsplit("\x1b[?25h", 1)[1]  # what stays once the live status is gone
    assert after_live.count("Paris, not Brussels.") == 1, out.getvalue()  # printed once, for good
