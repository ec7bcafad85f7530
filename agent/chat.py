"""A chat about photos: attach photos, ask follow-up questions on one thread.

The conversation lives in a LangGraph checkpointer (in memory, or SQLite under
``settings.data_dir/sessions.sqlite`` for a named session), so follow-ups see the earlier
analyses and a named session can be resumed later. Each photo is analysed by the GeoAgent; with no
LMM configured, follow-ups are answered from the analyses by simple rules.
"""

from __future__ import annotations

import json
import logging
import operator
from typing import Annotated, Any, Callable, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

from agent.lmm.answer import message_text
from agent.lmm.calls import LLMFailure, invoke_with_retries
from agent.prediction import Place, Prediction
from agent.prompts import render

log = logging.getLogger(__name__)


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    analyses: Annotated[list[dict[str, Any]], operator.add]  # Prediction dicts, one per attached photo
    new_analysis: dict[str, Any] | None


class ChatContext(TypedDict, total=False):
    chat_model: Any
    settings: Any


def _place(pred: dict[str, Any]) -> str:
    return Place.model_validate(pred.get("place") or {}).label("an unnamed place")


def summary(pred: dict[str, Any]) -> str:
    return (f"{pred['image']}: {pred['lat']:.5f}, {pred['lon']:.5f} near {_place(pred)} "
            f"(confidence {pred['confidence']:.2f}, source {pred['source']}). {pred.get('rationale', '')}").strip()


def rule_answer(question: str, analyses: list[dict[str, Any]]) -> str:
    """Answer a follow-up from the last analysis, without an LMM."""
    if not analyses:
        return "No photo yet: attach one with /image PATH and I will tell you where it was taken."
    pred = analyses[-1]
    q = question.lower()
    parts: list[str] = []
    if any(w in q for w in ("why", "reason", "evidence", "explain", "how do you know")):
        parts.append(pred.get("rationale") or "The analysis recorded no rationale.")
        parts += [f"- {e['kind']}: {e['detail']}" for e in pred.get("evidence") or []]
    if any(w in q for w in ("sure", "confiden", "certain", "likely")):
        parts.append(f"Confidence {pred['confidence']:.2f} (0 = a guess, 1 = certain), from {pred['source']} evidence.")
    if any(w in q for w in ("alternative", "else", "other", "instead")):
        alts = pred.get("alternatives") or []
        parts.append("Alternatives: " + "; ".join(f"{a['lat']:.4f}, {a['lon']:.4f} ({a['source']})" for a in alts[:5])
                     if alts else "The analysis kept no alternatives.")
    if any(w in q for w in ("country", "city", "where", "place", "region", "town")):
        parts.append(f"It was most likely taken near {_place(pred)}.")
    if any(w in q for w in ("coordinat", "lat", "gps", "position")):
        parts.append(f"Coordinates: {pred['lat']:.5f}, {pred['lon']:.5f}.")
    if any(w in q for w in ("tool", "step", "trace", "check")):
        parts.append("Steps: " + "; ".join(f"{t['tool']} -> {t['summary']}" for t in pred.get("trace") or []))
    if not parts:
        parts.append(summary(pred))
        parts.append("(No LMM is configured: I answer from the analysis. Ask about the place, coordinates, "
                     "confidence, alternatives, evidence or the steps taken.)")
    return "\n".join(parts)


def respond(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    new = state.get("new_analysis")
    if new:
        return {"messages": [AIMessage(summary(new))], "analyses": [new], "new_analysis": None}
    analyses = state.get("analyses") or []
    question = message_text(state["messages"][-1].content)
    model = (runtime.context or {}).get("chat_model")
    if model is None or not analyses:
        return {"messages": [AIMessage(rule_answer(question, analyses))]}
    settings = runtime.context.get("settings")
    brief = "\n".join(summary(a) + "\nEvidence: " + json.dumps([e["detail"] for e in a.get("evidence") or []])
                      for a in analyses)
    convo = [SystemMessage(render("chat_system", analyses=brief)),
             *[m for m in state["messages"] if m.type in ("human", "ai")]]
    try:
        reply, _ = invoke_with_retries(model, convo, retries=getattr(settings, "llm_max_retries", 0), backoff_s=1.0)
        return {"messages": [AIMessage(message_text(reply.content))]}
    except LLMFailure as exc:
        return {"messages": [AIMessage(f"(the LMM failed: {exc}; answering from the analysis)\n" + rule_answer(question, analyses))]}


def build_chat_graph(checkpointer: Any) -> Any:
    g = StateGraph(ChatState, context_schema=ChatContext)
    g.add_node("respond", respond)
    g.add_edge(START, "respond")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)


class ChatSession:
    """One conversation thread: ``attach(photo)`` and ``ask(question)``."""

    def __init__(self, agent: Any, *, checkpointer: Any, thread_id: str = "default", chat_model: Any = None) -> None:
        self.agent = agent
        self.chat_model = chat_model
        self.graph = build_chat_graph(checkpointer)
        self.config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 10}

    @property
    def context(self) -> ChatContext:
        return {"chat_model": self.chat_model, "settings": self.agent.settings}

    def history(self) -> list[AnyMessage]:
        return list(self.graph.get_state(self.config).values.get("messages") or [])

    def attach(self, photo: str, on_event: Callable[[dict[str, Any]], None] | None = None) -> Prediction:
        """Analyse a photo (events go to ``on_event`` live) and add the analysis to the thread."""
        pred: Prediction | None = None
        for event in self.agent.stream({"image": photo}):
            if on_event is not None:
                on_event(event)
            if event.get("type") == "prediction":
                pred = event["prediction"]
        assert pred is not None, "the agent graph ended without a prediction"
        self.graph.invoke({"messages": [HumanMessage(f"/image {photo}")], "new_analysis": pred.model_dump(mode="json")},
                          config=self.config, context=self.context)
        return pred

    def ask(self, question: str) -> str:
        out = self.graph.invoke({"messages": [HumanMessage(question)], "new_analysis": None},
                                config=self.config, context=self.context)
        return message_text(out["messages"][-1].content)
