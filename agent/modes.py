"""The one list of modes: every mode is a graph of ``agent.graphs`` (the no-LMM policy, the LMM
loop, the G3 recipe, and the retrieval baselines)."""

from __future__ import annotations

from agent.graphs import GRAPH_MODES
from retrieval_service.core.errors import ConfigError


def available_modes() -> tuple[str, ...]:
    """Every mode an agent can be loaded for."""
    return GRAPH_MODES


def check_mode(mode: str) -> str:
    """``mode`` when it is available; ConfigError naming the choices otherwise."""
    if mode not in available_modes():
        raise ConfigError(f"unknown mode {mode!r}", f"use one of: {', '.join(available_modes())}")
    return mode
