"""geoagent's agent: where was this photo taken?

``from agent import load_agent; pred = load_agent().invoke({"image": "photo.jpg"})``.
Imports are lazy so that ``import agent`` stays light (no torch, no LangGraph until used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.prediction import Evidence, Place, Prediction, TraceEntry

if TYPE_CHECKING:
    from agent.api import GeoAgent, load_agent

__all__ = ["GeoAgent", "load_agent", "Prediction", "Place", "TraceEntry", "Evidence"]


def __getattr__(name: str) -> Any:
    if name in ("GeoAgent", "load_agent", "RunResult"):
        from agent import api

        return getattr(api, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
