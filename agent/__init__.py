"""geoagent's agent: where was this photo taken?

``from agent import load_agent; pred = load_agent().invoke({"image": "photo.jpg"})``.

Rooms: ``graphs`` (one graph per mode: the no-LMM policy, the LMM loop, the G3 recipe, the retrieval
baselines, and the steps they share), ``decision`` (the probability model, the policy's rules and
rationale), ``lmm`` (chat-model factory, calls, final-answer schema, the photo as a content block),
``conversation`` (threads, follow-up questions, answers without an LMM, the chat session), ``cli``
(the ``geoagent`` command), ``web`` (the agent's HTTP endpoints and the chat page); beside them the
settings, the run context, the typed state, the toolbox (the one way to call a tool), the Prediction
and the public API. Heavy imports (torch, LangGraph) happen on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.prediction import Evidence, Option, Prediction, TraceEntry
from agent.settings import Settings, load_settings
from retrieval_service.core.types import Place

if TYPE_CHECKING:
    from agent.api import GeoAgent, RunResult, load_agent
    from agent.modes import available_modes
    from agent.options import RunOptions, TopK

__all__ = [
    "Evidence",
    "GeoAgent",
    "Option",
    "Place",
    "Prediction",
    "RunOptions",
    "RunResult",
    "Settings",
    "TopK",
    "TraceEntry",
    "available_modes",
    "load_agent",
    "load_settings",
]

_LAZY = {
    "GeoAgent": "agent.api",
    "load_agent": "agent.api",
    "RunResult": "agent.api",
    "RunOptions": "agent.options",
    "TopK": "agent.options",
    "available_modes": "agent.modes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
