"""Server-sent events of a locate run: the predictor's stream events turned into the wire format.

Event names, in the order a client sees them:

* ``thread`` ``{"thread_id"}``: first, the conversation the run belongs to;
* ``step_start`` ``{"tool"}`` / ``step_end`` ``{"tool", "summary", "latency_ms", "error", "tokens"}``:
  each tool call (``tool == "lmm"`` for an LMM request); ``node`` ``{"node"}``: a graph step ended;
* ``token`` ``{"text", "node"}``: LMM text as it is generated (only with an LMM that streams);
* ``prediction`` ``{"prediction"}``: the Prediction (its JSON); for a follow-up question ``reply``
  ``{"text", "changed", "error", "usage"}``; then ``done`` ``{}`` last;
* ``error`` ``{"error": {"code", "message", "fix"}}`` instead of the prediction when the run fails.

Comment lines (``: ping``) keep idle connections open.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from agent.prediction import Prediction


def sse(event: str, data: Any) -> bytes:
    """One event in the text/event-stream format."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


PING = b": ping\n\n"


def wire_event(event: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(event name, data) of one predictor event; None for events the client does not need."""
    kind = event.get("type")
    if kind == "tool_start":
        return "step_start", {"tool": event.get("tool")}
    if kind == "tool":
        keep = ("tool", "summary", "latency_ms", "error", "tokens")
        return "step_end", {k: event.get(k) for k in keep}
    if kind == "token":
        return "token", {"text": str(event.get("text") or ""), "node": event.get("node")}
    if kind == "reply":
        usage = event.get("usage")
        return "reply", {
            "text": str(event.get("text") or ""),
            "changed": bool(event.get("changed")),
            "error": event.get("error"),
            "usage": usage.model_dump() if isinstance(usage, BaseModel) else usage,
        }
    if kind == "node":
        return "node", {"node": event.get("node")}
    if kind == "prediction":
        pred = event["prediction"]
        body = pred.model_dump(mode="json") if isinstance(pred, Prediction) else pred
        return "prediction", {"prediction": body}
    return None


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of an event stream (comments skipped); clients and tests use it."""
    out: list[tuple[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out
