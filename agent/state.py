"""Graph state and run context of the geolocation agent.

The state carries a reference to the image (path, URL or content hash), never its bytes; the
image itself travels in the per-run context, which LangGraph does not checkpoint.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from langgraph.managed import RemainingSteps

MODES = ("policy", "agent", "rag", "retrieval", "rerank")


class AgentState(TypedDict, total=False):
    """What flows between the nodes. Lists marked with ``operator.add`` accumulate."""

    image: str  # the image reference: path, URL or "sha256:<hex>"
    messages: Annotated[list[AnyMessage], add_messages]
    exif: dict[str, Any] | None
    candidates: list[dict[str, Any]]  # Candidate dicts (lat, lon, score, source, payload)
    dissimilar: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    evidence: Annotated[list[dict[str, Any]], operator.add]  # Evidence dicts
    trace: Annotated[list[dict[str, Any]], operator.add]  # TraceEntry dicts
    warnings: Annotated[list[str], operator.add]
    observations: dict[str, Any]  # latest result per evidence tool (geocode, text, scene, verify)
    steps: int  # LMM rounds used
    repairs: int  # final-answer repair rounds used
    budget_exhausted: bool
    llm_failed: bool
    final: dict[str, Any] | None  # a validated FinalAnswer dict, once there is one
    prediction: dict[str, Any] | None
    remaining_steps: RemainingSteps


@dataclass
class AgentContext:
    """Per-run context (LangGraph ``context_schema``): settings, tools, chat model, the image."""

    settings: Any  # retrieval_service.settings.Settings
    tools: dict[str, Any]  # tool name -> BaseTool
    mode: str = "policy"
    chat_model: Any = None  # a langchain-core BaseChatModel or None
    image_input: Any = None  # what the tools receive as "image" (a path or URL string)
    retry_backoff_s: float = 1.0
    rag_samples: int = 1
    rag_neighbours: tuple[int, ...] = (0, 5, 10, 15)
    node_ms: dict[str, float] = field(default_factory=dict)  # wall time per node (own + tools + model)
    node_tool_ms: dict[str, float] = field(default_factory=dict)  # tool and LMM time inside each node
    tool_ms: float = 0.0  # running total of tool and LMM time in this run
    cache: dict[str, Any] = field(default_factory=dict)  # per-run memo (the image content block)
