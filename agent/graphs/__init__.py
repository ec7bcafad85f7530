"""One graph per way of deciding: the no-LMM policy, the LMM loop, the G3 recipe."""

from __future__ import annotations

from typing import Any

from retrieval_service.core.errors import ConfigError

GRAPH_MODES = ("policy", "agent", "rag")


def build_graph(mode: str, tools: list[Any], checkpointer: Any = None) -> Any:
    """The compiled graph of ``mode`` ("policy", "agent" or "rag")."""
    if mode == "policy":
        from agent.graphs.policy import build_policy_graph

        return build_policy_graph(checkpointer)
    if mode == "agent":
        from agent.graphs.llm_loop import build_agent_graph

        return build_agent_graph(tools, checkpointer)
    if mode == "rag":
        from agent.graphs.rag import build_rag_graph

        return build_rag_graph(tools, checkpointer)
    raise ConfigError(f"no graph for mode {mode!r}", f"use one of: {', '.join(GRAPH_MODES)}")
