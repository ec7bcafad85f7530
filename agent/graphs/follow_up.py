"""The graph's entry for a follow-up question on a thread that already holds an analysis.

A thread holds one photo. A question enters the same graph at ``follow_up``
(``Command(goto="follow_up")``, see ``agent.conversation.questions``) and runs the LMM loop again
with the tools and the photo; the reply is the last assistant message, and a new ``submit_answer``
re-decides the Prediction.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.lmm.answer import message_text
from agent.prediction import Prediction
from agent.prompts import render
from agent.state import AgentState, Loop

FOLLOW_UP = "follow_up"


def analysis_brief(prediction: Prediction | None) -> str:
    """An analysis in a few lines, for a conversation that has to start from it."""
    if prediction is None:
        return "no analysis"
    lines = [
        f"answer {prediction.lat:.5f}, {prediction.lon:.5f} near {prediction.place.label('an unnamed place')} "
        f"(confidence {prediction.confidence:.2f}, source {prediction.source}, mode {prediction.mode})",
        f"rationale: {prediction.rationale}",
    ]
    lines += [f"alternative: {a.lat:.4f}, {a.lon:.4f} ({a.source})" for a in prediction.alternatives[:5]]
    lines += [f"evidence ({e.kind}): {e.detail}" for e in prediction.evidence[:12]]
    return "\n".join(lines)


def photo_note(ctx: RunContext) -> str:
    return render("photo_every_call" if ctx.settings.llm_resend_photo else "photo_once")


def follow_up(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Start a follow-up turn: a fresh loop budget; a thread whose messages are no conversation yet
    (the RAG prompts, a fallback) gets one, seeded with the analysis and ending with the question."""
    ctx = runtime.context
    update: dict[str, Any] = {"loop": Loop(turn="follow_up"), "reply_error": None, "llm_failed": False}
    messages = state.get("messages") or []
    question = messages[-1] if messages and isinstance(messages[-1], HumanMessage) else HumanMessage("")
    brief = render("follow_up_brief", analysis=analysis_brief(state.get("prediction")))
    if not messages or not isinstance(messages[0], SystemMessage):
        system = render("system", max_steps=ctx.settings.max_steps, photo_note=photo_note(ctx))
        update["messages"] = [
            RemoveMessage(id=REMOVE_ALL_MESSAGES),
            SystemMessage(f"{system}\n\n{brief}"),
            HumanMessage(question.content, additional_kwargs=question.additional_kwargs),
        ]
    elif (pred := state.get("prediction")) is not None and pred.source != "lmm" and question.id:
        # the conversation did not produce the answer (the LMM failed, the policy or EXIF decided): say what did
        update["messages"] = [
            HumanMessage(
                f"{brief}\n\n{message_text(question.content)}", id=question.id, additional_kwargs=question.additional_kwargs
            )
        ]
    return update
