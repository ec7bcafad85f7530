"""One graph per mode: the no-LMM policy, the LMM loop, the G3 recipe, and the retrieval baselines
(``retrieval``: GeoCLIP's top-1; ``rerank``: DualGeo's cluster re-rank). Every graph ends with the
same ``decide`` node, the one place a Prediction is built."""

from __future__ import annotations

from typing import Any

from retrieval_service.core.errors import ConfigError

GRAPH_MODES = ("policy", "agent", "rag", "retrieval", "rerank")
LMM_MODES = ("agent", "rag")


def build_graph(mode: str, checkpointer: Any = None) -> Any:
    """The compiled graph of ``mode``."""
    if mode == "policy":
        from agent.graphs.policy import build_policy_graph

        return build_policy_graph(checkpointer)
    if mode == "agent":
        from agent.graphs.llm_loop import build_agent_graph

        return build_agent_graph(checkpointer)
    if mode == "rag":
        from agent.graphs.rag import build_rag_graph

        return build_rag_graph(checkpointer)
    if mode in ("retrieval", "rerank"):
        from agent.graphs.retrieval import build_baseline_graph

        return build_baseline_graph(mode, checkpointer)
    raise ConfigError(f"no graph for mode {mode!r}", f"use one of: {', '.join(GRAPH_MODES)}")
