"""The no-LMM policy: the same tools in a fixed order, decided by cluster support and verification.

observe -> inspect -> options -> verify -> choose -> name_place -> decide
(EXIF GPS goes straight to name_place; no retrieval candidates at all goes to decide.)
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from agent.context import RunContext
from agent.graphs.decide import decide
from agent.graphs.steps import choose, inspect, make_observe, name_place, options, route_after_observe, verify
from agent.state import RunState

Graph = StateGraph[Any, RunContext, Any, Any]
"""A graph under construction whose nodes read the run context (every mode's graph)."""


def add_policy_steps(graph: Graph, *, then: str = "name_place") -> None:
    """Add the policy's evidence and decision steps (inspect -> options -> verify -> choose -> ``then``)
    to ``graph``; the LMM graphs reuse them as their fallback."""
    graph.add_node("inspect", inspect)
    graph.add_node("options", options)
    graph.add_node("verify", verify)
    graph.add_node("choose", choose)
    graph.add_edge("inspect", "options")
    graph.add_edge("options", "verify")
    graph.add_edge("verify", "choose")
    graph.add_edge("choose", then)


def add_ending(graph: Graph) -> None:
    """name_place -> decide -> END."""
    graph.add_node("name_place", name_place)
    graph.add_node("decide", decide)
    graph.add_edge("name_place", "decide")
    graph.add_edge("decide", END)


def build_policy_graph(checkpointer: Any = None) -> Any:
    graph = StateGraph(RunState, context_schema=RunContext)
    graph.add_node("observe", make_observe())
    add_policy_steps(graph)
    add_ending(graph)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", route_after_observe("inspect"), ["inspect", "name_place", "decide"])
    return graph.compile(checkpointer=checkpointer, name="geoagent-policy")
