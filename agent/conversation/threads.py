"""Threads: a thread (a LangGraph ``thread_id`` on the agent's checkpointer) holds one photo: its
analysis, then the follow-up questions about it, persisted by the checkpointer (SQLite, or
PostgreSQL shared by replicas: ``agent.conversation.checkpointers``). A listing row per thread is
kept beside the checkpoints (``agent.conversation.thread_index``) when a run on it ends, so listing
is one indexed query.

A second photo on a thread that holds one is refused (``ThreadError``: use a new thread id), so two
photos' conversations, traces and evidence never mix.

The API the CLI chat and the web chat build on::

    with sqlite_checkpointer(settings.data_dir / "sessions.sqlite") as saver:
        threads = Threads(load_agent(settings, checkpointer=saver))
        tid, pred = threads.create("photo.jpg", on_event=print)     # analyse a photo on a new thread
        answer = threads.ask(tid, "could it be Belgium instead?")   # -> FollowUp (reply, prediction, usage)
        threads.list()                                              # -> [ThreadSummary], newest first
        threads.history(tid)                                        # -> ThreadHistory (turns, prediction)

``stream_create`` / ``stream_ask`` give the same runs as event iterators (for server-sent events):
the agent's events (``node``, ``tool_start``, ``tool``, ``token``, ``prediction``, ``reply``; see
``GeoAgent.stream``) and a last ``{"type": "thread", "thread_id": ...}``. With an LMM (modes agent
and rag) a question runs the agent's graph again with the tools and the photo; without one, or
when the LMM fails, it is answered from the analysis by rules (:mod:`agent.conversation.rules`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ConfigDict, Field

from agent.conversation.checkpointers import sqlite_checkpointer as sqlite_checkpointer  # moved there; kept importable
from agent.conversation.rules import rule_answer
from agent.conversation.thread_index import ThreadIndex, index_for, now_iso
from agent.lmm.answer import message_text
from agent.prediction import Prediction, Usage
from retrieval_service.core.errors import ConfigError, GeoAgentError
from retrieval_service.core.types import MaybeLocated

log = logging.getLogger(__name__)
Event = dict[str, Any]
QUESTION_KEY = "geoagent_question"  # additional_kwargs of a follow-up's HumanMessage: the question as asked


class ThreadError(GeoAgentError):
    """A thread cannot take this request (it holds another photo, or no analysis yet)."""


class FollowUp(BaseModel):
    """The outcome of a follow-up question on a thread."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reply: str = Field(description="The answer in words (empty when the LMM failed and nothing answered).")
    prediction: Prediction | None = Field(default=None, description="The thread's prediction after the question.")
    changed: bool = Field(default=False, description="Whether the model submitted a new answer (a new prediction).")
    usage: Usage = Field(default_factory=Usage, description="What this question cost.")
    error: str | None = Field(default=None, description="Why the LMM gave no reply (it failed, or gave no valid answer).")


class Turn(BaseModel):
    """One message of a thread as a chat shows it."""

    role: Literal["user", "assistant", "tool"]
    text: str
    kind: Literal["question", "prompt", "reply", "tool_calls", "tool_result"] = Field(
        description=(
            "question: a follow-up as the user asked it; prompt: a message the agent wrote to the LMM; "
            "reply: the assistant's text; tool_calls: an assistant message calling tools; tool_result: a tool's answer."
        )
    )
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, description="[{name, args}] of a tool_calls turn.")
    name: str | None = Field(default=None, description="The tool of a tool_result turn.")


class ThreadSummary(MaybeLocated):
    """A thread in a listing."""

    thread_id: str
    image: str
    created_at: str | None = Field(default=None, description="ISO time of the thread's first checkpoint.")
    updated_at: str | None = Field(default=None, description="ISO time of its latest checkpoint.")
    place: str | None = None
    confidence: float | None = None
    questions: int = Field(default=0, description="Follow-up questions asked on it.")


class ThreadHistory(BaseModel):
    """What a thread holds: the photo, its current prediction, the conversation and the LMM usage."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    thread_id: str
    image: str
    prediction: Prediction | None = None
    turns: list[Turn] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)


def thread_id(config: dict[str, Any] | None) -> str | None:
    """The ``thread_id`` of a run config (None when it names none)."""
    return ((config or {}).get("configurable") or {}).get("thread_id")


def thread_config(tid: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": tid}}


def new_thread_id(prefix: str = "photo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def with_thread(config: dict[str, Any], prefix: str = "photo") -> dict[str, Any]:
    """``config`` with a fresh thread id when it has none (an agent with a checkpointer needs one)."""
    if thread_id(config) is not None:
        return config
    return {**config, "configurable": {**(config.get("configurable") or {}), "thread_id": new_thread_id(prefix)}}


def held_image(values: dict[str, Any]) -> str | None:
    """The reference of the photo a thread's values hold (None: no photo yet)."""
    photo = values.get("photo")
    return photo.ref if photo is not None else None


def check_free(values: dict[str, Any], tid: str, image_ref: str) -> None:
    """Refuse to analyse ``image_ref`` on a thread that already holds a photo."""
    held = held_image(values)
    if not held:
        return
    if held == image_ref:
        raise ThreadError(
            f"thread {tid!r} already holds the analysis of {held}",
            "ask follow-up questions on it, or use a new thread id to analyse the photo again",
        )
    raise ThreadError(f"thread {tid!r} holds the photo {held}; a thread holds one photo", f"use a new thread id for {image_ref}")


def usage_delta(after: Usage | None, before: Usage | None) -> Usage:
    a, b = after or Usage(), before or Usage()
    return Usage(
        calls=a.calls - b.calls,
        input_tokens=a.input_tokens - b.input_tokens,
        output_tokens=a.output_tokens - b.output_tokens,
        seconds=round(max(0.0, a.seconds - b.seconds), 6),
    )


def turns(messages: list[Any]) -> list[Turn]:
    """A thread's LMM messages as chat turns (system prompts left out, image data never included)."""
    out: list[Turn] = []
    for msg in messages:
        if isinstance(msg, SystemMessage):
            continue
        if isinstance(msg, HumanMessage):
            question = (msg.additional_kwargs or {}).get(QUESTION_KEY)
            out.append(
                Turn(
                    role="user",
                    text=question if question is not None else message_text(msg.content),
                    kind="question" if question is not None else "prompt",
                )
            )
        elif isinstance(msg, AIMessage):
            calls = [{"name": c["name"], "args": c.get("args") or {}} for c in msg.tool_calls or []]
            calls += [
                {"name": c.get("name") or "?", "args": {"raw_arguments": str(c.get("args") or "")[:200]}}
                for c in msg.invalid_tool_calls or []
            ]
            out.append(
                Turn(role="assistant", text=message_text(msg.content), kind="tool_calls" if calls else "reply", tool_calls=calls)
            )
        elif isinstance(msg, ToolMessage):
            out.append(Turn(role="tool", text=message_text(msg.content)[:2000], kind="tool_result", name=msg.name))
    return out


class Threads:
    """Photos on threads of one agent (built with a ``checkpointer``): create, ask, list, history."""

    def __init__(self, agent: Any, *, index: ThreadIndex | None = None) -> None:
        if getattr(agent, "checkpointer", None) is None or not hasattr(agent, "graph"):
            raise ConfigError(
                "threads need a graph agent with a checkpointer (every photo gets a thread)",
                "build it with load_agent(settings, mode='policy'|'agent'|'rag', checkpointer=...)",
            )
        self.agent = agent
        self.index = index or index_for(agent.checkpointer)
        if self.index.created:  # a new listing beside existing checkpoints: filled once from them
            self._backfill()

    @property
    def can_follow_up(self) -> bool:
        """Whether questions go through the agent's graph (an LMM mode) rather than the rules."""
        return self.agent.chat_model is not None and self.agent.mode in ("agent", "rag")

    def values(self, tid: str) -> dict[str, Any]:
        return dict(self.agent.graph.get_state(thread_config(tid)).values or {})

    def _held(self, tid: str) -> dict[str, Any]:
        values = self.values(tid)
        if not held_image(values):
            raise ThreadError(f"no thread {tid!r} with a photo", "create one with a photo first (Threads.create)")
        return values

    def stream_create(self, image: Any, *, thread_id: str | None = None) -> Iterator[Event]:
        """Analyse ``image`` on a new thread (``thread_id`` or a fresh id; one that holds a photo is
        refused): the agent's events, then ``{"type": "thread", "thread_id"}``."""
        tid = thread_id or new_thread_id()
        ran = False
        try:
            for event in self.agent.stream({"image": image}, thread_config(tid)):
                ran = True
                yield event
        finally:
            if ran:  # a refused photo (the thread holds another) changes nothing
                self._record(tid)
        yield {"type": "thread", "thread_id": tid}

    def create(
        self, image: Any, *, thread_id: str | None = None, on_event: Callable[[Event], None] | None = None
    ) -> tuple[str, Prediction]:
        """Analyse ``image`` on a new thread; returns (thread id, prediction)."""
        tid, pred = thread_id or "", None
        for event in self.stream_create(image, thread_id=thread_id):
            if on_event is not None:
                on_event(event)
            if event["type"] == "prediction":
                pred = event["prediction"]
            elif event["type"] == "thread":
                tid = event["thread_id"]
        if pred is None:
            raise GeoAgentError("the agent graph ended without a prediction", "report this as a bug, with --debug output")
        return tid, pred

    def stream_ask(self, tid: str, question: str) -> Iterator[Event]:
        """A follow-up question on thread ``tid``: the agent's events (LMM modes) ending with a
        ``reply`` event (``text``, ``changed``, ``usage``, ``error``), then ``thread``."""
        self._held(tid)
        if not isinstance(question, str) or not question.strip():
            raise GeoAgentError("the question is empty", "ask a question in words, e.g. 'could it be Belgium instead?'")
        reply: Event | None = None
        try:
            if self.can_follow_up:
                for event in self.agent.stream({"question": question}, thread_config(tid)):
                    if event["type"] == "reply":
                        reply = event
                    else:
                        yield event
            if reply is None or (reply.get("error") and not reply.get("text")):
                reply = self._rule_reply(tid, question, reply)
        finally:
            self._record(tid)
        yield reply
        yield {"type": "thread", "thread_id": tid}

    def _rule_reply(self, tid: str, question: str, failed: Event | None) -> Event:
        """Answer from the analysis and keep the question and the answer in the thread."""
        values = self.values(tid)
        pred = values.get("prediction")
        text = rule_answer(question, [pred] if pred is not None else [], obs=values.get("obs"))
        if failed is not None:
            text = f"(the LMM could not answer: {failed.get('error')}; answering from the analysis)\n{text}"
        messages: list[Any] = [AIMessage(text)]
        last = (values.get("messages") or [None])[-1]
        if failed is None or not isinstance(last, HumanMessage):  # a failed LMM turn already holds the question
            messages.insert(0, HumanMessage(question, additional_kwargs={QUESTION_KEY: question}))
        self.agent.graph.update_state(thread_config(tid), {"messages": messages}, as_node="decide")
        return {
            "type": "reply",
            "text": text,
            "changed": False,
            "error": (failed or {}).get("error"),
            "usage": (failed or {}).get("usage") or Usage(),
        }

    def ask(self, tid: str, question: str, on_event: Callable[[Event], None] | None = None) -> FollowUp:
        """A follow-up question on thread ``tid`` (see :meth:`stream_ask`)."""
        outcome: Event = {}
        for event in self.stream_ask(tid, question):
            if on_event is not None:
                on_event(event)
            if event["type"] == "reply":
                outcome = event
        return FollowUp(
            reply=outcome.get("text") or "",
            prediction=self.values(tid).get("prediction"),
            changed=bool(outcome.get("changed")),
            usage=outcome.get("usage") or Usage(),
            error=outcome.get("error"),
        )

    def history(self, tid: str) -> ThreadHistory:
        """The thread's photo, current prediction, conversation turns and LMM usage."""
        values = self._held(tid)
        return ThreadHistory(
            thread_id=tid,
            image=held_image(values) or "",
            prediction=values.get("prediction"),
            turns=turns(values.get("messages") or []),
            usage=values.get("usage") or Usage(),
        )

    def delete(self, tid: str) -> None:
        """Remove the thread (its checkpoints and its listing row); ThreadError when there is none."""
        self._held(tid)
        self.agent.checkpointer.delete_thread(tid)
        self.index.delete(tid)

    def list(self, prefix: str | None = None) -> list[ThreadSummary]:
        """The threads that hold a photo (``prefix``: only ids starting with it), newest first: one
        query on the listing kept beside the checkpoints."""
        out = []
        for created, updated, summary in self.index.rows(prefix):
            row = ThreadSummary.model_validate_json(summary)
            out.append(row.model_copy(update={"created_at": created, "updated_at": updated}))
        return out

    def summary(self, tid: str, values: dict[str, Any] | None = None, *, updated_at: str | None = None) -> ThreadSummary | None:
        """The thread's listing row from its state (None while it holds no photo)."""
        values = self.values(tid) if values is None else values
        if not held_image(values):
            return None
        pred: Prediction | None = values.get("prediction")
        asked = sum(
            1 for m in values.get("messages") or [] if isinstance(m, HumanMessage) and QUESTION_KEY in (m.additional_kwargs or {})
        )
        return ThreadSummary(
            thread_id=tid,
            image=held_image(values) or "",
            updated_at=updated_at or now_iso(),
            questions=asked,
            lat=pred.lat if pred else None,
            lon=pred.lon if pred else None,
            place=pred.place.label() or None if pred else None,
            confidence=pred.confidence if pred else None,
        )

    def _record(self, tid: str) -> None:
        """Write the thread's listing row; a failure is logged, never raised over the run's outcome."""
        try:
            summary = self.summary(tid)
            if summary is not None:
                self.index.record(summary)
        except Exception as exc:  # the listing is derived data: the thread itself is saved
            log.warning("could not update the listing of thread %s: %s", tid, exc)

    def _backfill(self) -> None:
        """Fill a new listing from the checkpoints already saved (a database from before the listing)."""
        times: dict[str, list[str]] = {}
        for item in self.agent.checkpointer.list(None):
            tid = item.config["configurable"].get("thread_id")
            if tid is None or item.config["configurable"].get("checkpoint_ns"):
                continue
            times.setdefault(str(tid), []).append(str(item.checkpoint.get("ts") or ""))
        for tid, stamps in times.items():
            summary = self.summary(tid, updated_at=max(stamps) or None)
            if summary is not None:
                self.index.record(summary.model_copy(update={"created_at": min(stamps) or None}))
