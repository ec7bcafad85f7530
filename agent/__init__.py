"""geoagent's agent: where was this photo taken?

``from agent import load_agent; pred = load_agent().invoke({"image": "photo.jpg"})``.

Rooms: ``graphs`` (one graph per mode: the no-LMM policy, the LMM loop, the G3 recipe, and the steps
they share), ``decision`` (the policy's rules and rationale), ``lmm`` (chat-model factory, calls,
final-answer schema, the photo as a content block), ``cli`` (the ``geoagent`` command); beside them
the settings, the run context, the typed state, the Prediction and the public API. Heavy imports
(torch, LangGraph) happen on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.prediction import Evidence, Place, Prediction, TraceEntry
from agent.settings import Settings, load_settings

if TYPE_CHECKING:
    from agent.api import GeoAgent, load_agent
    from agent.modes import available_modes
    from agent.predictor import Predictor, RunResult

__all__ = ["Evidence", "GeoAgent", "Place", "Prediction", "Predictor", "RunResult", "Settings", "TraceEntry",
           "available_modes", "load_agent", "load_settings"]

_LAZY = {"GeoAgent": "agent.api", "load_agent": "agent.api", "Predictor": "agent.predictor",
         "RunResult": "agent.predictor", "available_modes": "agent.modes"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
