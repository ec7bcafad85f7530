"""The graph that ``langgraph dev`` and LangGraph Studio serve (see ``langgraph.json``).

Input ``{"image": <path or http(s) URL>}``, output ``{"prediction": <the Prediction's JSON>}``. The
one node runs the agent configured by the ``GEOAGENT_*`` settings (mode: agent with an LMM, else
policy; override with ``GEOAGENT_STUDIO_MODE``); the agent's own graph runs inside it with the
node's callbacks, so Studio shows its steps and tool calls. Nothing loads at import: the agent is
built on the first run and reused.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

_lock = threading.Lock()
_agent: Any = None


class StudioInput(TypedDict):
    image: str


class StudioOutput(TypedDict, total=False):
    prediction: dict[str, Any]


class StudioState(StudioInput, StudioOutput):
    pass


def studio_agent() -> Any:
    """The agent for Studio runs (built once from the environment's settings)."""
    global _agent
    with _lock:
        if _agent is None:
            from agent.api import load_agent

            _agent = load_agent(mode=os.environ.get("GEOAGENT_STUDIO_MODE") or None)
        return _agent


def locate(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    # stream, not invoke: the node's callbacks (a manager inside a run) pass straight to the agent's graph
    preds = [
        e["prediction"]
        for e in studio_agent().stream({"image": state["image"]}, {"callbacks": config.get("callbacks")})
        if e.get("type") == "prediction"
    ]
    if not preds:
        raise RuntimeError("the agent ended without a prediction")
    return {"prediction": preds[-1].model_dump(mode="json")}


def build_studio_graph() -> Any:
    g = StateGraph(StudioState, input_schema=StudioInput, output_schema=StudioOutput)
    g.add_node("locate", locate)
    g.add_edge(START, "locate")
    g.add_edge("locate", END)
    return g.compile(name="geoagent")


graph = build_studio_graph()
