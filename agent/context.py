"""The run context (LangGraph ``context_schema``): what a run needs and never changes during it.

It is frozen; per-run measurements (node timings) are collected by a callback handler
(``agent.timing.NodeTimer``) and the trace, not written into the context. ``photo`` is the photo's
handle, resolved once at the API boundary; the tools read it from here (``ToolRuntime.context``).
``policy`` holds the circuit breaker shared by every photo of the agent (a run or a batch) and the
per-photo limits; ``mixtures`` holds this run's probability mixtures, one per evidence set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool

from agent.decision.sources import Mixtures
from agent.lmm.calls import CallPolicy
from agent.settings import Settings
from retrieval_service.core.photo import Photo


@dataclass(frozen=True)
class RunContext:
    """Settings, tools (by name) and the node that runs them, the chat model and how it is called,
    the photo, the mode's options and the run's mixtures."""

    settings: Settings
    tools: Mapping[str, BaseTool]
    photo: Photo
    tool_node: Any  # the ToolNode every tool call goes through (agent.toolbox.make_tool_node)
    mode: str = "policy"
    chat_model: Any = None  # a langchain-core BaseChatModel, or None without an LMM
    models: Mapping[str, Any] = field(default_factory=dict)  # chat_model with tools bound (agent.lmm.answer.bound_models)
    policy: CallPolicy = field(default_factory=CallPolicy)
    rag_samples: int = 1
    mixtures: Mixtures = field(default_factory=Mixtures)
