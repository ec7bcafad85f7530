"""A follow-up question on a thread: checked, turned into the graph's input (it enters the graph at
``follow_up``, ``agent.graphs.follow_up``), and what came of it (``FollowUp``: the reply, whether
the answer changed, what it cost)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.types import Command

from agent.conversation.threads import QUESTION_KEY, FollowUp, ThreadError, thread_id, usage_delta
from agent.graphs import LMM_MODES
from agent.graphs.follow_up import FOLLOW_UP
from agent.lmm.answer import message_text
from agent.prompts import render
from retrieval_service.core.errors import ConfigError, GeoAgentError


def is_question(input: Any) -> bool:
    """``{"question": ...}`` (a follow-up) rather than ``{"image": ...}`` (a new photo)."""
    return isinstance(input, dict) and "question" in input and "image" not in input


def check_question(agent: Any, question: Any, config: dict | None) -> str:
    """The question, stripped, when ``agent`` can answer it on the thread of ``config``; a clear
    error naming what is missing otherwise."""
    if agent.chat_model is None or agent.mode not in LMM_MODES:
        raise ConfigError(
            f"follow-up questions need an LMM; this agent runs mode {agent.mode!r}",
            "set GEOAGENT_LLM_MODEL and use mode agent or rag",
        )
    if agent.checkpointer is None or thread_id(config) is None:
        raise ConfigError(
            "follow-up questions need a thread",
            "build the agent with load_agent(..., checkpointer=InMemorySaver()) and pass "
            "config={'configurable': {'thread_id': ...}} to invoke and ask",
        )
    if not isinstance(question, str) or not question.strip():
        raise GeoAgentError("the question is empty", "ask a question in words, e.g. 'could it be Belgium instead?'")
    return question.strip()


def check_analysed(values: dict[str, Any], tid: str | None) -> None:
    """Refuse a question on a thread that holds no analysed photo."""
    if values.get("prediction") is None or values.get("photo") is None:
        raise ThreadError(
            f"thread {tid!r} holds no analysed photo yet", "analyse a photo on it first: agent.invoke({'image': ...}, config)"
        )


def question_input(question: str) -> Command:
    """The graph input of a question: the prompt (the question as asked kept beside it), entering at
    ``follow_up``."""
    message = HumanMessage(render("follow_up", question=question), additional_kwargs={QUESTION_KEY: question})
    return Command(goto=FOLLOW_UP, update={"messages": [message]})


def outcome(after: dict[str, Any], before: dict[str, Any]) -> FollowUp:
    """What a question did to the thread: the reply (the last assistant text), whether the
    prediction changed, the usage it added and the LMM's error (when it gave no reply)."""
    prediction = after.get("prediction")
    changed = prediction is not None and prediction != before.get("prediction")
    last = next((m for m in reversed(after.get("messages") or []) if isinstance(m, AIMessage)), None)
    reply = message_text(last.content).strip() if last is not None else ""
    error = after.get("reply_error")
    if changed and not reply and prediction is not None:
        reply = (
            f"I changed my answer to {prediction.lat:.5f}, {prediction.lon:.5f} "
            f"({prediction.place.label('an unnamed place')}): {prediction.rationale}"
        )
    return FollowUp(
        reply="" if error and not changed else reply,
        prediction=prediction,
        changed=changed,
        usage=usage_delta(after.get("usage"), before.get("usage")),
        error=error,
    )
