"""Calling a tool from a graph node: timing, error capture and a one-line summary for the trace."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

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
            shares = sorted((result.get("shares") or {}).items(), key=lambda kv: -kv[1])[:3]
            return ", ".join(f"{k} {v:.0%}" for k, v in shares) or "no segments"
        if name == "verify_locations":
            ranked = result.get("ranked") or []
            return (
                f"{len(ranked)} ranked; best {ranked[0]['lat']:.3f}, {ranked[0]['lon']:.3f} ({ranked[0]['score']:.3f})"
                if ranked
                else "nothing to verify"
            )
    except (KeyError, TypeError, ValueError, IndexError):
        pass
    return json.dumps(result, default=str)[:160]


def call_tool(tools: dict[str, Any], name: str, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Invoke a tool by name; return ``(result, trace entry)``. Never raises: failures become
    ``{"error": ...}`` results, as the tools contract has it."""
    start = time.perf_counter()
    tool = tools.get(name)
    if tool is None:
        result: dict[str, Any] = {"error": f"tool {name!r} is not available (have: {', '.join(tools)})"}
    else:
        try:
            out = tool.invoke(args)
            result = out if isinstance(out, dict) else {"result": out}
        except Exception as exc:  # a tool must not take the graph down
            log.warning("tool %s failed: %s", name, exc)
            result = {"error": f"{type(exc).__name__}: {exc}"}
    latency = (time.perf_counter() - start) * 1000
    shown = {k: v for k, v in args.items() if k != "candidates"}
    if "candidates" in args:
        shown["candidates"] = f"<{len(args['candidates'])} candidates>"
    entry = {
        "tool": name,
        "args": shown,
        "summary": summarise(name, result),
        "latency_ms": round(latency, 3),
        "error": result.get("error") if isinstance(result.get("error"), str) else None,
    }
    return result, entry
