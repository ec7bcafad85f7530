"""Every tool call of a run goes one way, and its result is folded into the state one way.

* ``run_tools(runtime, calls)`` runs tool calls through the run's ``ToolNode`` (LangGraph's
  prebuilt node: one task per call, in parallel; the photo reaches each tool as its injected
  ``runtime`` argument, from the run context). The policy's steps call it with the calls they
  decide on; the LMM loop's ``tools`` node with the model's calls.
* ``fold(runtime, results)`` turns the results into the state update: a trace entry per call (its
  summary written by the tool's own module, ``GeoTool.summarise``), the typed artifacts as
  observations, retrieval candidates as candidates; each entry is sent live as a ``tool`` event.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from agent.prediction import TraceEntry
from agent.state import Observations, merge_observations
from retrieval_service.core.types import RetrievalResult, Verification
from retrieval_service.evidence.clustering import ClusteringResult
from retrieval_service.evidence.exif import ExifInfo
from retrieval_service.evidence.geocoding import GeocodedPlace
from retrieval_service.evidence.ocr import TextReading
from retrieval_service.evidence.scene import SceneComposition

log = logging.getLogger(__name__)

OBSERVED = {
    ExifInfo: "exif",
    ClusteringResult: "clusters",
    TextReading: "text",
    SceneComposition: "scene",
    Verification: "verification",
    GeocodedPlace: "place",
}
"""Which observation each typed artifact is (a retrieval result is handled on its own)."""


class ToolResult(NamedTuple):
    """One call and what came of it: the content the LMM reads, the typed artifact (None when it
    failed) and the trace entry."""

    name: str
    args: dict[str, Any]
    content: dict[str, Any]
    artifact: Any
    entry: TraceEntry


def emit(runtime: Runtime[Any], event: dict[str, Any]) -> None:
    """Send a live event to ``stream(..., stream_mode="custom")`` consumers (a no-op otherwise)."""
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer(event)


def tool_call(name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tool call a step makes itself (the same shape as a model's)."""
    return {"name": name, "args": dict(args or {}), "id": f"step-{name}-{uuid.uuid4().hex[:8]}", "type": "tool_call"}


def tool_reply(call_id: str | None, name: str, text: str, *, error: bool = True) -> ToolMessage:
    """The tool message answering a call that the graph answers itself (an error, or a receipt)."""
    content = json.dumps({"error": text}) if error else text
    return ToolMessage(content=content, tool_call_id=call_id or "", name=name, status="error" if error else "success")


def turn_messages(messages: list[Any]) -> tuple[AIMessage | None, list[ToolMessage]]:
    """The last assistant message (None when there is none) and the tool messages after it."""
    after: list[ToolMessage] = []
    for msg in reversed(messages):
        if isinstance(msg, ToolMessage):
            after.append(msg)
        elif isinstance(msg, AIMessage):
            return msg, list(reversed(after))
        else:
            after = []
    return None, []


def pending_calls(messages: list[Any]) -> list[dict[str, Any]]:
    """The last assistant message's tool calls that no tool message answers yet."""
    ai, answered = turn_messages(messages)
    if ai is None:
        return []
    done = {m.tool_call_id for m in answered}
    return [{**c, "type": "tool_call"} for c in ai.tool_calls or [] if c.get("id") not in done]


def _announce_and_time(request: Any, execute: Callable[[Any], Any]) -> Any:
    """ToolNode interceptor: announce the call live and time it."""
    writer = getattr(request.runtime, "stream_writer", None)
    if writer is not None:
        writer({"type": "tool_start", "tool": request.tool_call["name"]})
    start = time.perf_counter()
    out = execute(request)
    if isinstance(out, ToolMessage):
        out.response_metadata = {**(out.response_metadata or {}), "latency_ms": (time.perf_counter() - start) * 1000}
    return out


def make_tool_node(tools: list[BaseTool]) -> ToolNode:
    """The ToolNode every tool call of an agent goes through (its failures become error messages)."""
    return ToolNode(list(tools), handle_tool_errors=True, wrap_tool_call=_announce_and_time, name="run_tools")


def tool_message_content(message: ToolMessage) -> dict[str, Any]:
    """The content of a tool's ToolMessage as a dict (``{"error": ...}`` for failures)."""
    try:
        content = json.loads(message.content) if isinstance(message.content, str) else message.content
    except json.JSONDecodeError:
        content = message.content
    if not isinstance(content, dict):
        content = {"error": str(content)} if message.status == "error" else {"result": content}
    if message.status == "error" and "error" not in content:
        content = {"error": str(message.content)}
    return content


def _shown_args(args: dict[str, Any]) -> dict[str, Any]:
    """Tool arguments as the trace shows them: no runtime, candidate lists counted, not copied."""
    shown = {k: v for k, v in args.items() if k not in ("runtime", "image", "candidates")}
    if "candidates" in args:
        shown["candidates"] = f"<{len(args['candidates'])} candidates>"
    return shown


def trace_entry(
    tools: Mapping[str, BaseTool], name: str, args: dict[str, Any], content: dict[str, Any], latency_ms: float
) -> TraceEntry:
    """The trace entry of one call; its summary comes from the tool's own module."""
    error = content.get("error")
    tool = tools.get(name)
    summarise = getattr(tool, "summarise", None)
    if error is not None:
        summary = f"error: {error}"[:200]
    elif summarise is not None:
        summary = summarise(content)
    else:
        summary = json.dumps(content, default=str)[:160]
    return TraceEntry(
        tool=name,
        args=_shown_args(args),
        summary=summary,
        latency_ms=round(latency_ms, 3),
        error=str(error)[:300] if error is not None else None,
    )


def result_of(tools: Mapping[str, BaseTool], call: dict[str, Any], message: ToolMessage) -> ToolResult:
    """Pair a call with the message that answered it."""
    content = tool_message_content(message)
    artifact = None if "error" in content else message.artifact
    latency = float((message.response_metadata or {}).get("latency_ms", 0.0))
    return ToolResult(
        call["name"],
        call.get("args") or {},
        content,
        artifact,
        trace_entry(tools, call["name"], call.get("args") or {}, content, latency),
    )


def run_tools(runtime: Runtime[Any], calls: list[dict[str, Any]]) -> list[ToolMessage]:
    """Run ``calls`` through the run's ToolNode, inside the node that asks (its config, so its
    callbacks and stream); one ToolMessage per call, in the calls' order."""
    if not calls:
        return []
    out = runtime.context.tool_node.invoke(calls, get_config())
    messages = out.get("messages", []) if isinstance(out, dict) else out
    by_id = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    return [by_id[c["id"]] for c in calls if c["id"] in by_id]


def call_tools(runtime: Runtime[Any], *calls: dict[str, Any]) -> list[ToolResult]:
    """Run the calls a step decides on and pair each with its result."""
    tools = runtime.context.tools
    messages = {m.tool_call_id: m for m in run_tools(runtime, list(calls))}
    return [result_of(tools, c, messages[c["id"]]) for c in calls if c["id"] in messages]


def absorb(artifact: Any) -> dict[str, Any]:
    """The state update a tool's typed result makes (``{}`` for a failed call)."""
    if isinstance(artifact, RetrievalResult):
        update: dict[str, Any] = {"candidates": artifact.gallery + artifact.database + artifact.text}
        if artifact.geo_filter is None:  # a zoomed-in search does not replace the photo's own retrieval
            update["obs"] = Observations(retrieval=artifact)
        return update
    for kind, name in OBSERVED.items():
        if isinstance(artifact, kind):
            return {"obs": Observations(**{name: artifact})}
    return {}


def fold(runtime: Runtime[Any], results: list[ToolResult]) -> dict[str, Any]:
    """The state update of some tool results: trace entries (each sent live), observations, candidates."""
    trace, candidates, obs = [], [], None
    for result in results:
        trace.append(result.entry)
        emit(runtime, {"type": "tool", **result.entry.model_dump()})
        update = absorb(result.artifact)
        candidates += update.get("candidates", [])
        if "obs" in update:
            obs = merge_observations(obs, update["obs"])
    out: dict[str, Any] = {"trace": trace, "candidates": candidates}
    if obs is not None:
        out["obs"] = obs
    return out


class Step:
    """A graph node's tool calls and their folded update: ``step.call(name, args)`` runs one call
    (through ``run_tools``), folds its result at once (so its trace entry goes out live) and returns
    it; ``step.update(**more)`` is the node's state update."""

    def __init__(self, runtime: Runtime[Any]) -> None:
        self.runtime = runtime
        self.trace: list[TraceEntry] = []
        self.candidates: list[Any] = []
        self.obs: Observations | None = None

    def call(self, name: str, args: dict[str, Any] | None = None) -> ToolResult:
        call = tool_call(name, args)
        results = call_tools(self.runtime, call)
        folded = fold(self.runtime, results)
        self.trace += folded["trace"]
        self.candidates += folded["candidates"]
        if "obs" in folded:
            self.obs = merge_observations(self.obs, folded["obs"])
        if results:
            return results[0]
        content = {"error": f"tool {name!r} gave no result"}
        return ToolResult(
            name, call["args"], content, None, trace_entry(self.runtime.context.tools, name, call["args"], content, 0.0)
        )

    def update(self, **more: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"trace": self.trace}
        if self.candidates:
            out["candidates"] = self.candidates
        if self.obs is not None:
            out["obs"] = self.obs
        for key, value in more.items():
            if key in ("trace", "candidates"):
                out[key] = [*out.get(key, []), *value]
            elif key == "obs":
                out[key] = merge_observations(out.get("obs"), value)
            else:
                out[key] = value
        return out
