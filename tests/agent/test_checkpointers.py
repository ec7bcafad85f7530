"""Conversations' storage: the state's types are registered with the checkpointer's serializer (a
thread read back logs no "Deserializing unregistered type" and survives LangGraph's strict mode),
the listing is one query on the index kept beside the checkpoints (filled once for an old
database), and GEOAGENT_DATABASE_URL picks the checkpointer."""

from __future__ import annotations

import logging
import sqlite3
import warnings

import pytest
from langchain_core.messages import AIMessage

from agent import load_agent
from agent.conversation.checkpointers import open_checkpointer, serializer, sqlite_checkpointer, state_types
from agent.conversation.thread_index import TABLE
from agent.conversation.threads import Threads
from retrieval_service.core.errors import ConfigError
from tests.agent.fakes import ScriptedChatModel, call, make_fake_tools, submit

FINAL = {"lat": 48.86, "lon": 2.35, "confidence": 0.7, "rationale": "the Paris cluster"}


def _lmm_threads(settings, saver, script):
    agent = load_agent(
        settings,
        mode="agent",
        chat_model=ScriptedChatModel(script=script),
        tools=make_fake_tools(),
        checkpointer=saver,
        retry_backoff_s=0.001,
    )
    return Threads(agent)


def test_a_thread_reads_back_without_unregistered_types(agent_settings, photo, tmp_path, caplog):
    """Before: reading a thread logged "Deserializing unregistered type agent.prediction.Prediction ...
    will be blocked in a future version" for each of the state's own types."""
    db = tmp_path / "threads.sqlite"
    script = [
        AIMessage("", tool_calls=[call("read_text", {}, "t1")]),
        submit(FINAL, "a1"),
        submit({**FINAL, "lat": 48.9}, "a2", text="Still Paris."),
    ]
    with sqlite_checkpointer(db) as saver:
        threads = _lmm_threads(agent_settings, saver, script)
        tid, _ = threads.create(str(photo))
        threads.ask(tid, "are you sure?")
    caplog.set_level(logging.WARNING, logger="langgraph")
    with sqlite_checkpointer(db) as saver, warnings.catch_warnings():
        warnings.simplefilter("error")
        threads = _lmm_threads(agent_settings, saver, [])
        values = threads.values(tid)
        history = threads.history(tid)
        snapshots = list(threads.agent.graph.get_state_history({"configurable": {"thread_id": tid}}))
    assert values["prediction"].lat == 48.9 and values["obs"].text is not None and history.turns
    assert snapshots and all(s.values.get("photo") is not None for s in snapshots[:-1])
    noisy = [r.getMessage() for r in caplog.records if "unregistered" in r.getMessage() or "Blocked" in r.getMessage()]
    assert noisy == []


def test_the_serializer_allows_the_states_types_and_nothing_else():
    from agent.prediction import Prediction
    from agent.state import Answer, Observations
    from retrieval_service.core.photo import Photo
    from retrieval_service.evidence.ocr import TextReading

    found = state_types()
    assert {Prediction, Answer, Observations, Photo, TextReading} <= found
    assert all(not t.__module__.startswith(("langchain_core", "builtins")) for t in found)
    allowed = serializer()._allowed_msgpack_modules
    assert ("agent.prediction", "Prediction") in allowed and ("os", "system") not in allowed


def test_listing_is_one_query_on_the_index(agent_settings, photo, tmp_path, monkeypatch):
    """Before: Threads.list() walked every checkpoint of the database."""
    with sqlite_checkpointer(tmp_path / "t.sqlite") as saver:
        threads = Threads(load_agent(agent_settings, mode="policy", tools=make_fake_tools(), checkpointer=saver))
        first, _ = threads.create(str(photo), thread_id="chat-1")
        second, _ = threads.create(str(photo), thread_id="chat-2")
        threads.ask(first, "what are the coordinates?")
        monkeypatch.setattr(saver, "list", lambda *a, **k: pytest.fail("the listing walked the checkpoints"))
        listed = threads.list(prefix="chat-")
        assert [t.thread_id for t in listed] == ["chat-1", "chat-2"]  # the question made chat-1 the latest
        assert listed[0].questions == 1 and listed[0].created_at < listed[0].updated_at and abs(listed[0].lat - 48.86) < 0.2
        assert threads.list(prefix="other-") == [] and threads.list(prefix="chat_") == []  # LIKE's wildcards escaped
        threads.delete(second)
        assert [t.thread_id for t in threads.list()] == ["chat-1"]


def test_an_older_database_gets_its_listing_once(agent_settings, photo, tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite_checkpointer(db) as saver:
        threads = Threads(load_agent(agent_settings, mode="policy", tools=make_fake_tools(), checkpointer=saver))
        threads.create(str(photo), thread_id="trip/1")
    with sqlite3.connect(db) as conn:  # a database written before the listing existed
        conn.execute(f"DROP TABLE {TABLE}")
    with sqlite_checkpointer(db) as saver:
        threads = Threads(load_agent(agent_settings, mode="policy", tools=make_fake_tools(), checkpointer=saver))
        listed = threads.list()
        assert [t.thread_id for t in listed] == ["trip/1"] and listed[0].created_at and listed[0].lat is not None


def test_the_database_url_picks_the_checkpointer(tmp_path):
    with open_checkpointer(None, tmp_path / "a.sqlite") as saver:
        assert type(saver).__name__ == "SqliteSaver"
    with pytest.raises(ConfigError, match="not a PostgreSQL URL"), open_checkpointer("mysql://u:secret@h/db", tmp_path / "b"):
        pass
    refused = "postgresql://geo:secret@127.0.0.1:9/geo?connect_timeout=2"  # a refused loopback port, no DNS
    with pytest.raises(ConfigError, match="cannot connect") as err, open_checkpointer(refused, tmp_path / "c"):
        pass
    assert "secret" not in err.value.message and "GEOAGENT_DATABASE_URL" in (err.value.hint or "")
