"""Per-node timings of a graph run, collected by a LangChain callback handler.

``NodeTimer`` records each node's wall time and, separately, the time spent inside tools and chat
models it called (attributed through LangGraph's ``langgraph_node`` metadata), so the benchmarks can
tell the agent's own time from the models' time.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler


class NodeTimer(BaseCallbackHandler):
    """Wall time per node (``node_ms``) and tool/LMM time inside each node (``inner_ms``)."""

    def __init__(self) -> None:
        self.node_ms: dict[str, float] = {}
        self.inner_ms: dict[str, float] = {}
        self._open: dict[UUID, tuple[str, float, bool]] = {}
        self._lock = threading.Lock()

    def _start(self, run_id: UUID, node: str | None, inner: bool) -> None:
        if node:
            with self._lock:
                self._open[run_id] = (node, time.perf_counter(), inner)

    def _end(self, run_id: UUID) -> None:
        with self._lock:
            started = self._open.pop(run_id, None)
            if started is None:
                return
            node, t0, inner = started
            target = self.inner_ms if inner else self.node_ms
            target[node] = target.get(node, 0.0) + (time.perf_counter() - t0) * 1000

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, metadata: dict | None = None, **kwargs: Any) -> None:
        node = (metadata or {}).get("langgraph_node")
        if node and kwargs.get("name") == node:  # the node's own run, not a runnable inside it
            self._start(run_id, node, inner=False)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_start(
        self, serialized: Any, input_str: str, *, run_id: UUID, metadata: dict | None = None, **kwargs: Any
    ) -> None:
        self._start(run_id, (metadata or {}).get("langgraph_node"), inner=True)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, metadata: dict | None = None, **kwargs: Any
    ) -> None:
        self._start(run_id, (metadata or {}).get("langgraph_node"), inner=True)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    @property
    def own_ms(self) -> dict[str, float]:
        """Each node's time outside tools and chat models."""
        return {node: ms - self.inner_ms.get(node, 0.0) for node, ms in self.node_ms.items()}
