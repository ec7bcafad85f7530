"""The one list of modes: the agent's own graphs plus the predictors other packages register.

Graph modes are built here ("policy", "agent", "rag"). Other predictors (the evaluation package's
"retrieval" and "rerank" baselines) register under the ``geoagent.predictors`` entry-point group as
``name = "module:factory"``, where ``factory(settings, *, tools, services)`` returns a ``Predictor``;
so the CLI and the Python API offer them without the agent importing their package.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from agent.graphs import GRAPH_MODES
from retrieval_service.core.errors import ConfigError

PREDICTOR_GROUP = "geoagent.predictors"


@lru_cache(maxsize=1)
def predictor_plugins() -> dict[str, EntryPoint]:
    """Registered predictor factories by mode name (graph modes cannot be overridden)."""
    return {ep.name: ep for ep in entry_points(group=PREDICTOR_GROUP) if ep.name not in GRAPH_MODES}


def available_modes() -> tuple[str, ...]:
    """Every mode a predictor can be loaded for: the graphs first, then the registered predictors."""
    return GRAPH_MODES + tuple(sorted(predictor_plugins()))


def check_mode(mode: str) -> str:
    """``mode`` when it is available; ConfigError naming the choices otherwise."""
    if mode not in available_modes():
        raise ConfigError(f"unknown mode {mode!r}", f"use one of: {', '.join(available_modes())}")
    return mode
