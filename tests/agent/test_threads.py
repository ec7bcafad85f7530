"""Threads: one photo per thread, follow-up questions with the tools, listing and history, persistence."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image

from agent import load_agent
from agent.conversation.threads import ThreadError, Threads, sqlite_checkpointer
from tests.agent.fakes import ScriptedChatModel, call, make_fake_tools, submit

FINAL = {"lat": 48.86, "lon": 2.35, "confidence": 0.7, "rationale": "the Paris cluster"}


@pytest.fixture()
def second_photo(tmp_path):
    path = tmp_path / "second.jpg"
    Image.new("RGB", (800, 600), (200, 60, 40)).save(path)
    return path


def _lmm_agent(settings, script, checkpointer=None):
    model = ScriptedChatModel(script=script)
    agent = load_agent(
        settings,
        mode="agent",
        chat_model=model,
        tools=make_fake_tools(),
        checkpointer=checkpointer or InMemorySaver(),
        retry_backoff_s=0.001,
    )
    return agent, model


def test_a_second_photo_on_a_thread_is_refused_and_never_sees_the_first(agent_settings, photo, second_photo):
    agent, model = _lmm_agent(agent_settings, [submit(FINAL, "a1"), submit({**FINAL, "lat": 40.0}, "a2")])
    cfg = {"configurable": {"thread_id": "t1"}}
    first = agent.invoke({"image": str(photo)}, cfg)
    # the old graph appended the second photo to the first photo's conversation on the same thread
    with pytest.raises(ThreadError, match="holds the photo"):
        agent.invoke({"image": str(second_photo)}, cfg)
    with pytest.raises(ThreadError, match="already holds the analysis"):
        agent.invoke({"image": str(photo)}, cfg)
    assert agent.graph.get_state(cfg).values["prediction"] == first and len(model.received) == 1
    second = agent.invoke({"image": str(second_photo)})  # no thread id: a fresh thread of its own
    assert second.lat == 40.0 and second.image != first.image
    sent = model.received[1]
    assert sum(isinstance(m, AIMessage) for m in sent) == 0  # nothing of the first photo's conversation
    assert [t.tool for t in second.trace].count("read_exif") == 1


def test_threads_api_follow_up_with_tools_and_a_changed_answer(agent_settings, photo):
    script = [
        submit(FINAL, "a1"),
        AIMessage("", tool_calls=[call("verify_locations", {"candidates": [{"lat": 50.85, "lon": 4.35}]}, "v1")]),
        submit({**FINAL, "lat": 50.85, "lon": 4.35, "rationale": "Brussels verified better"}, "a2", text="It is Brussels."),
    ]
    agent, _model = _lmm_agent(agent_settings, script)
    threads = Threads(agent)
    tid, pred = threads.create(str(photo))
    assert pred.lat == FINAL["lat"] and threads.list()[0].thread_id == tid
    out = threads.ask(tid, "could it be Belgium instead?")
    assert out.changed and out.prediction.lat == 50.85 and out.reply == "It is Brussels." and out.error is None
    assert out.usage.calls == 2 and out.prediction.usage.calls == 3  # the thread's total includes the analysis
    hist = threads.history(tid)
    kinds = [(t.role, t.kind) for t in hist.turns]
    assert ("user", "question") in kinds and hist.turns[kinds.index(("user", "question"))].text == "could it be Belgium instead?"
    assert any(t.kind == "tool_result" and t.name == "verify_locations" for t in hist.turns)
    assert hist.usage.calls == 3 and threads.list()[0].questions == 1
    with pytest.raises(ThreadError):
        threads.ask("no-such-thread", "why?")


def test_follow_up_when_the_lmm_fails_answers_from_the_analysis(agent_settings, photo):
    agent, _model = _lmm_agent(agent_settings, [submit(FINAL, "a1"), ValueError("bad request")])
    threads = Threads(agent)
    tid, _ = threads.create(str(photo))
    out = threads.ask(tid, "what are the coordinates?")
    assert out.error and "bad request" in out.error and "Coordinates: 48.86" in out.reply
    msgs = threads.values(tid)["messages"]
    assert isinstance(msgs[-1], AIMessage) and isinstance(msgs[-2], HumanMessage)  # the question and its answer kept


def test_policy_threads_persist_in_sqlite(agent_settings, photo, tmp_path):
    db = tmp_path / "s" / "sessions.sqlite"
    with sqlite_checkpointer(db) as saver:
        threads = Threads(load_agent(agent_settings, mode="policy", tools=make_fake_tools(), checkpointer=saver))
        tid, _ = threads.create(str(photo), thread_id="trip/photo-1")
        assert "Coordinates: 48." in threads.ask(tid, "what are the coordinates?").reply
    with sqlite_checkpointer(db) as saver:
        threads = Threads(load_agent(agent_settings, mode="policy", tools=make_fake_tools(), checkpointer=saver))
        listed = threads.list(prefix="trip/")
        assert [t.thread_id for t in listed] == ["trip/photo-1"] and listed[0].questions == 1
        assert listed[0].created_at <= listed[0].updated_at and abs(listed[0].lat - 48.86) < 0.2
        turns = threads.history("trip/photo-1").turns
        assert [(t.role, t.kind) for t in turns] == [("user", "question"), ("assistant", "reply")]


def test_threads_need_a_checkpointer(agent_settings):
    from retrieval_service.core.errors import ConfigError

    with pytest.raises(ConfigError, match="checkpointer"):
        Threads(load_agent(agent_settings, mode="policy", tools=make_fake_tools()))


def test_a_follow_up_after_a_fallback_tells_the_model_what_decided(agent_settings, photo):
    agent, model = _lmm_agent(agent_settings, [ValueError("bad request"), AIMessage("It was the policy: Paris.")])
    threads = Threads(agent)
    tid, pred = threads.create(str(photo))
    assert pred.source != "lmm"
    out = threads.ask(tid, "why there?")
    assert out.reply == "It was the policy: Paris." and out.error is None
    question = model.received[1][-1]
    assert isinstance(question, HumanMessage)
    assert "analysed already" in question.content and "why there?" in question.content and "48.8" in question.content
    assert [t.text for t in threads.history(tid).turns if t.kind == "question"] == ["why there?"]
