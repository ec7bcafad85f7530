"""A chat about photos: attach photos, ask follow-up questions about them.

Every photo gets its own thread (``agent.conversation.threads``: ``<session>/photo-<n>``): its analysis, then the
questions about it. A new photo starts a new thread, so two photos' conversations never mix; the
earlier ones stay in the session. The session's own record (its photos and the transcript that
``/history`` shows) lives in the same checkpointer under ``chat:<session>``, so a named session can
be resumed. With an LMM (modes agent and rag) a question runs the agent's graph again with the
tools and the photo; without one it is answered from the analysis by rules.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from agent.conversation.rules import summary
from agent.conversation.threads import Threads, held_image
from agent.prediction import Prediction

log = logging.getLogger(__name__)

Event = dict[str, Any]


class SessionRecord(TypedDict, total=False):
    transcript: Annotated[list[AnyMessage], add_messages]
    photos: Annotated[list[dict[str, str]], operator.add]  # {"image", "thread_id"}, in the order attached


def _record_graph(checkpointer: Any) -> Any:
    graph = StateGraph(SessionRecord)
    graph.add_node("record", lambda state: {})
    graph.add_edge(START, "record")
    graph.add_edge("record", END)
    return graph.compile(checkpointer=checkpointer, name="geoagent-chat-session")


class ChatSession:
    """One conversation: ``attach(photo)``, ``ask(question)``, ``history()``; needs an agent built
    with a checkpointer (``load_agent(..., checkpointer=...)``), which also keeps the session."""

    def __init__(self, agent: Any, *, session: str = "default") -> None:
        self.threads = Threads(agent)
        self.agent = agent
        self.session = session
        self.record = _record_graph(agent.checkpointer)
        self.config = {"configurable": {"thread_id": f"chat:{session}"}}

    @property
    def can_follow_up(self) -> bool:
        """Whether questions go through the agent's graph (an LMM mode), rather than the rules."""
        return self.threads.can_follow_up

    def _values(self) -> dict[str, Any]:
        return dict(self.record.get_state(self.config).values or {})

    def _save(self, **update: Any) -> None:
        self.record.invoke(update, config=self.config)

    def history(self) -> list[AnyMessage]:
        """The transcript: each /image with its answer, each question with its reply."""
        return list(self._values().get("transcript") or [])

    def photos(self) -> list[dict[str, str]]:
        return list(self._values().get("photos") or [])

    def current_thread(self) -> str | None:
        photos = self.photos()
        return photos[-1]["thread_id"] if photos else None

    def current(self) -> Prediction | None:
        """The latest prediction of the photo the chat is about (the last one attached)."""
        tid = self.current_thread()
        return self.threads.values(tid).get("prediction") if tid else None

    def attach(self, photo: str, on_event: Callable[[Event], None] | None = None) -> Prediction:
        """Analyse a photo on a new thread (events go to ``on_event`` live); it becomes the current photo."""
        tid = f"{self.session}/photo-{len(self.photos()) + 1}"
        if held_image(self.threads.values(tid)):  # a thread left by an interrupted attach: never reuse it
            tid = f"{tid}-{len(self.threads.list(prefix=f'{self.session}/'))}"
        _, pred = self.threads.create(photo, thread_id=tid, on_event=on_event)
        self._save(
            transcript=[HumanMessage(f"/image {photo}"), AIMessage(summary(pred.model_dump(mode="json")))],
            photos=[{"image": pred.image, "thread_id": tid}],
        )
        return pred

    def ask(self, question: str, on_event: Callable[[Event], None] | None = None) -> str:
        """Answer a question about the current photo (through the graph with an LMM, else by rules)."""
        tid = self.current_thread()
        if tid is None:
            from agent.conversation.rules import rule_answer

            reply = rule_answer(question, [])
        else:
            reply = self.threads.ask(tid, question, on_event=on_event).reply
        self._save(transcript=[HumanMessage(question), AIMessage(reply)])
        return reply
