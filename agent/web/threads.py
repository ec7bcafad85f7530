"""The web chat's conversations: a thread holds one photo's analysis (its Prediction) and the
follow-up questions and answers about it, persisted in SQLite under the data dir so earlier
conversations can be listed and reopened after a restart.

Follow-ups are answered from the thread's analysis: by the configured LMM when there is one
(the ``chat_system`` prompt with the analysis, then the conversation), else by the rules of
``agent.chat.rule_answer``. The store is thread-safe (one connection per call, WAL journal).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.prediction import Prediction
from retrieval_service.core.errors import GeoAgentError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    role TEXT NOT NULL, text TEXT NOT NULL, prediction TEXT, created REAL NOT NULL,
    PRIMARY KEY (thread_id, seq));
"""


class ThreadNotFound(GeoAgentError):
    """No thread has this id."""


class Message(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    prediction: Prediction | None = Field(default=None, description="The analysis, on the message that answered a photo.")
    created: float


class ThreadSummary(BaseModel):
    id: str
    title: str
    created: float
    updated: float
    lat: float | None = None
    lon: float | None = None
    place: str | None = None
    messages: int = 0


class Thread(ThreadSummary):
    items: list[Message] = Field(default_factory=list)

    @property
    def prediction(self) -> Prediction | None:
        preds = [m.prediction for m in self.items if m.prediction is not None]
        return preds[-1] if preds else None


class ThreadStore:
    """Threads and their messages in one SQLite file (``":memory:"``-free: always a file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA foreign_keys=ON")
        try:
            with db:
                yield db
        finally:
            db.close()

    def create(self, title: str) -> str:
        tid = uuid.uuid4().hex[:16]
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT INTO threads (id, title, created, updated) VALUES (?, ?, ?, ?)", (tid, title[:200], now, now))
        return tid

    def exists(self, tid: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM threads WHERE id = ?", (tid,)).fetchone() is not None

    def add(self, tid: str, role: str, text: str, prediction: Prediction | None = None) -> Message:
        now = time.time()
        body = prediction.model_dump_json() if prediction is not None else None
        with self._lock, self._connect() as db:
            if db.execute("SELECT 1 FROM threads WHERE id = ?", (tid,)).fetchone() is None:
                raise ThreadNotFound(f"no conversation with id {tid!r}", "start a new one by sending a photo (GET /v1/threads lists them)")
            seq = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM messages WHERE thread_id = ?", (tid,)).fetchone()[0]
            db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", (tid, seq, role, text, body, now))
            db.execute("UPDATE threads SET updated = ? WHERE id = ?", (now, tid))
        return Message(role=role, text=text, prediction=prediction, created=now)

    def get(self, tid: str) -> Thread:
        with self._connect() as db:
            row = db.execute("SELECT id, title, created, updated FROM threads WHERE id = ?", (tid,)).fetchone()
            if row is None:
                raise ThreadNotFound(f"no conversation with id {tid!r}", "GET /v1/threads lists the conversations")
            rows = db.execute("SELECT role, text, prediction, created FROM messages WHERE thread_id = ? ORDER BY seq", (tid,)).fetchall()
        items = [Message(role=r, text=t, prediction=Prediction.model_validate_json(p) if p else None, created=c) for r, t, p, c in rows]
        thread = Thread(id=row[0], title=row[1], created=row[2], updated=row[3], items=items, messages=len(items))
        pred = thread.prediction
        if pred is not None:
            thread.lat, thread.lon, thread.place = pred.lat, pred.lon, pred.place.label(None)
        return thread

    def list(self, limit: int = 100) -> list[ThreadSummary]:
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM threads ORDER BY updated DESC LIMIT ?", (limit,))]
        out = []
        for tid in ids:
            thread = self.get(tid)
            out.append(ThreadSummary(**thread.model_dump(exclude={"items"})))
        return out

    def delete(self, tid: str) -> None:
        with self._connect() as db:
            if db.execute("DELETE FROM threads WHERE id = ?", (tid,)).rowcount == 0:
                raise ThreadNotFound(f"no conversation with id {tid!r}", "GET /v1/threads lists the conversations")


def answer_follow_up(thread: Thread, question: str, *, chat_model: Any = None, settings: Any = None) -> str:
    """The answer to ``question`` about the thread's analysis (LMM when configured, else rules)."""
    from agent.chat import rule_answer, summary

    pred = thread.prediction
    analyses = [pred.model_dump(mode="json")] if pred is not None else []
    if chat_model is None or not analyses:
        return rule_answer(question, analyses)
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from agent.lmm.answer import message_text
    from agent.lmm.calls import LLMFailure, invoke_with_retries
    from agent.prompts import render

    brief = summary(analyses[0]) + "\nEvidence: " + json.dumps([e.detail for e in pred.evidence])
    convo: list[Any] = [SystemMessage(render("chat_system", analyses=brief))]
    for m in thread.items:
        convo.append(HumanMessage(m.text) if m.role == "user" else AIMessage(m.text))
    convo.append(HumanMessage(question))
    try:
        reply, _ = invoke_with_retries(chat_model, convo, retries=getattr(settings, "llm_max_retries", 0), backoff_s=1.0)
        return message_text(reply.content)
    except LLMFailure as exc:
        log.warning("follow-up LMM call failed: %s", exc)
        return f"(the LMM failed: {exc}; answering from the analysis)\n" + rule_answer(question, analyses)
