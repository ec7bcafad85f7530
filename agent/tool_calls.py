"""Calling a tool from a graph node: timing, error capture, the typed artifact, and a one-line
summary of the result for the trace."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from agent.prediction import TraceEntry
from retrieval_service.evidence.scene import SceneComposition

log = logging.getLogger(__name__)


def summarise(name: str, result: Any) -> str:
    """One short line describing a tool result, for the trace and the live view."""
    if not isinstance(result, dict):
        return str(result)[:160]
    if "error" in result:
        return f"error: {result['error']}"[:200]
    try:
        if name == "read_exif":
            gps = result.get("gps")
            return f"GPS {gps['lat']:.4f}, {gps['lon']:.4f}" if gps else "no GPS in EXIF"
        if name == "retrieve":
            g, d = result.get("gallery") or [], result.get("database") or []
            top = (g or d)[:1]
            head = f"; top {top[0]['lat']:.3f}, {top[0]['lon']:.3f} ({top[0].get('score', 0):.3f})" if top else ""
            filt = f" filter={result['filter']}" if result.get("filter") else ""
            return f"{len(g)} gallery + {len(d)} database candidates{head}{filt}"
        if name == "cluster_candidates":
            best = result.get("best")
            where = f"; best {best['lat']:.3f}, {best['lon']:.3f} support {best.get('support')}" if best else ""
            return f"{len(result.get('clusters') or [])} clusters, {result.get('noise', 0)} noise{where}"
        if name == "reverse_geocode":
            parts = [result.get(k) for k in ("place", "admin1", "country")]
            return ", ".join(p for p in parts if p) + f" ({result.get('distance_km', '?')} km)"
        if name == "read_text":
            lines = [ln.get("text", "") for ln in result.get("lines") or []][:3]
            places = [p.get("name") for p in result.get("places") or []][:3]
            return f"text {lines}; places {places}" if lines else "no text found"
        if name == "segment_scene":
            return SceneComposition.model_validate(result).describe() or "no segments"
        if name == "verify_locations":
            ranked = result.get("ranked") or []
            return (
                f"{len(ranked)} ranked; best {ranked[0]['lat']:.3f}, {ranked[0]['lon']:.3f} ({ranked[0]['score']:.3f})"
                if ranked
                else "nothing to verify"
            )
    except (KeyError, TypeError, ValueError, IndexError):  # pydantic's ValidationError is a ValueError
        pass
    return json.dumps(result, default=str)[:160]


def _shown_args(args: dict[str, Any]) -> dict[str, Any]:
    """Tool arguments as the trace shows them: no image, candidate lists counted, not copied."""
    shown = {k: v for k, v in args.items() if k not in ("image", "candidates")}
    if "candidates" in args:
        shown["candidates"] = f"<{len(args['candidates'])} candidates>"
    return shown


def trace_entry(name: str, args: dict[str, Any], content: Any, latency_ms: float) -> TraceEntry:
    """The trace entry of one tool call from its arguments and its content."""
    error = content.get("error") if isinstance(content, dict) else None
    return TraceEntry(tool=name, args=_shown_args(args), summary=summarise(name, content),
                      latency_ms=round(latency_ms, 3), error=str(error)[:300] if error is not None else None)


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


def call_tool(tools: Mapping[str, BaseTool], name: str, args: dict[str, Any]) -> tuple[dict[str, Any], Any, TraceEntry]:
    """Invoke a tool by name; return ``(content, artifact, trace entry)``. Never raises: failures
    are ``{"error": ...}`` contents with no artifact, as the tools contract has it."""
    start = time.perf_counter()
    tool = tools.get(name)
    artifact: Any = None
    if tool is None:
        content: dict[str, Any] = {"error": f"tool {name!r} is not available (have: {', '.join(tools)})"}
    else:
        try:
            message = tool.invoke({"type": "tool_call", "name": name, "args": args, "id": f"direct-{name}"})
            if isinstance(message, ToolMessage):
                content, artifact = tool_message_content(message), message.artifact
            else:  # a plain tool (no ToolMessage): its output is the content
                content = message if isinstance(message, dict) else {"result": message}
        except Exception as exc:  # a tool must not take the graph down
            log.warning("tool %s failed: %s", name, exc)
            content = {"error": f"{type(exc).__name__}: {exc}"}
    if "error" in content:
        artifact = None
    return content, artifact, trace_entry(name, args, content, (time.perf_counter() - start) * 1000)
