"""The graph that ``langgraph dev`` and LangGraph Studio serve (see ``langgraph.json``).

Input ``{"image": <path or http(s) URL>}``, output ``{"prediction": <the Prediction's JSON>}``. The
one node runs the agent configured by the ``GEOAGENT_*`` settings (mode: agent with an LMM, else
policy; override with ``GEOAGENT_STUDIO_MODE``); the agent's own graph runs inside it with the
node's callbacks, so Studio shows its steps and tool calls. Nothing loads at import: the agent is
built on the first run and reused.

The LangGraph API server shows an exception's message only for a few exception types (ValueError,
TypeError, RuntimeError, ...) and masks every other one as "An internal error occurred". A run that
fails (a missing photo, no CLIP weights, no location found) therefore raises :class:`StudioRunError`,
a ``RuntimeError`` whose message is the geoagent error's message and fix, chained to the original.
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


class StudioRunError(RuntimeError):
    """A failed Studio run, as a type the LangGraph API server shows with its message."""


def run_error(exc: BaseException) -> StudioRunError:
    """``exc`` as a StudioRunError naming its type, its message and (for a GeoAgentError) the fix."""
    from retrieval_service.core.errors import GeoAgentError

    if isinstance(exc, GeoAgentError):
        text = f"{type(exc).__name__}: {exc.message}" + (f" (fix: {exc.hint})" if exc.hint else "")
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return StudioRunError(text)


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
    try:
        preds = [
            e["prediction"]
            for e in studio_agent().stream({"image": state.get("image")}, {"callbacks": config.get("callbacks")})
            if e.get("type") == "prediction"
        ]
    except StudioRunError:
        raise
    except Exception as exc:  # every failure reaches Studio with its message, not masked
        raise run_error(exc) from exc
    if not preds:
        raise StudioRunError("the agent ended without a prediction")
    return {"prediction": preds[-1].model_dump(mode="json")}


def build_studio_graph() -> Any:
    g = StateGraph(StudioState, input_schema=StudioInput, output_schema=StudioOutput)
    g.add_node("locate", locate)
    g.add_edge(START, "locate")
    g.add_edge("locate", END)
    return g.compile(name="geoagent")


graph = build_studio_graph()
