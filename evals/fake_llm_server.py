"""A scripted OpenAI-compatible chat server on loopback that enforces the protocol like the OpenAI API.

The tests drive the LMM graphs through it (``ChatOpenAI`` pointed at ``server.base_url``) and
``evals.bench_lmm`` measures with it. Every ``POST /v1/chat/completions`` is checked the way the
OpenAI API checks it, and refused with HTTP 400 and an OpenAI-style error body when it breaks a rule:

* an assistant message with ``tool_calls`` must be followed by tool messages answering each
  ``tool_call_id`` exactly once, before any other message;
* a tool message must answer a tool call of the assistant message before it;
* tools are function schemas with object parameters and unique names; a named ``tool_choice`` must
  be offered; image parts must be data URLs holding valid base64 (or http(s) URLs).

Replies come from a script, consumed in order (or a function of the request body): ``Reply`` (text
and/or tool calls, whose arguments may be a raw string such as invalid JSON), ``Fail`` (an HTTP
error with headers, e.g. Retry-After), ``Garbage`` (a broken HTTP 200 body), ``Hang`` (no answer
for a while), ``Drop`` (the connection closes). A request past the end of the script is a
violation (HTTP 500). Streamed requests get server-sent events, with a usage chunk when asked.
Usage: prompt tokens = request bytes // 4 and completion tokens = reply bytes // 4 unless scripted.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NO_RESPONSE = (
    "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
    "'tool_call_id'. The following tool_call_ids did not have response messages: {ids}"
)
ORPHAN_TOOL = "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."


@dataclass
class Reply:
    """An assistant reply: ``text`` and ``calls`` [(name, arguments dict or raw string)]."""

    text: str = ""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens; computed when None


@dataclass
class Fail:
    status: int = 503
    message: str = "the server is overloaded"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Garbage:
    body: bytes = b"<html><body>502 Bad Gateway</body></html>"
    content_type: str = "application/json"


@dataclass
class Hang:
    seconds: float = 5.0


@dataclass
class Drop:
    """Close the connection without an answer."""


@dataclass
class Recorded:
    body: dict[str, Any]
    size: int
    status: int = 200
    error: str | None = None


def _check_image(url: Any) -> str | None:
    if not isinstance(url, str):
        return "image_url.url must be a string"
    if url.startswith(("http://", "https://")):
        return None
    head, _, data = url.partition(",")
    if not head.startswith("data:image/") or ";base64" not in head:
        return "Invalid image URL: expected a base64 data URL"
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "Invalid base64 image data"
    return None


def protocol_errors(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(param, message) for every rule ``body`` breaks, as the OpenAI API words them."""
    errors: list[tuple[str, str]] = []
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return [("messages", "'messages' must be a non-empty array")]
    pending: list[str] = []
    offered: set[str] = set()
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            errors.append((f"messages.[{i}].role", f"Invalid role {role!r}"))
            continue
        if pending and role != "tool":
            errors.append((f"messages.[{i}].role", NO_RESPONSE.format(ids=", ".join(pending))))
            pending = []
        if role == "assistant":
            calls = msg.get("tool_calls") or []
            ids = [c.get("id") for c in calls]
            if len(set(ids)) != len(ids) or not all(isinstance(x, str) and x for x in ids):
                errors.append((f"messages.[{i}].tool_calls", "tool call ids must be unique non-empty strings"))
            for c in calls:
                fn = c.get("function") or {}
                if c.get("type") != "function" or not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
                    errors.append(
                        (f"messages.[{i}].tool_calls", "each tool call needs type 'function', a name and string arguments")
                    )
            pending = [x for x in ids if isinstance(x, str)]
            offered = set(pending)
        elif role == "tool":
            tid = msg.get("tool_call_id")
            if tid not in pending:
                errors.append((f"messages.[{i}]", ORPHAN_TOOL if tid not in offered else f"tool_call_id {tid} is answered twice"))
            else:
                pending.remove(tid)
        content = msg.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    problem = _check_image((part.get("image_url") or {}).get("url"))
                    if problem:
                        errors.append((f"messages.[{i}].content", problem))
    if pending:
        errors.append((f"messages.[{len(messages)}].role", NO_RESPONSE.format(ids=", ".join(pending))))
    names: list[str] = []
    for t in body.get("tools") or []:
        fn = t.get("function") or {}
        params = fn.get("parameters", {"type": "object"})
        if t.get("type") != "function" or not fn.get("name") or params.get("type") != "object":
            errors.append(("tools", "each tool must be a function with object parameters"))
        names.append(fn.get("name"))
    if len(set(names)) != len(names):
        errors.append(("tools", "tool names must be unique"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name") not in names:
        errors.append(("tool_choice", "tool_choice names a tool that is not offered"))
    return errors


class FakeOpenAI:
    """The server: ``with FakeOpenAI(script) as server: ChatOpenAI(base_url=server.base_url, ...)``.

    ``requests`` records every request (parsed body, size in bytes, the status answered) and
    ``violations`` every protocol error and unexpected request; ``latency_s`` delays each answer."""

    def __init__(self, script: list[Any] | Callable[[dict[str, Any]], Any] = (), *, latency_s: float = 0.0) -> None:
        self.script = script if callable(script) else list(script)
        self.latency_s = latency_s
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._ids = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _next(self, body: dict[str, Any]) -> Any:
        if callable(self.script):
            return self.script(body)
        with self._lock:
            if not self.script:
                self.violations.append(f"unexpected request {len(self.requests)}: the script is exhausted")
                return Fail(500, "the fake server's script is exhausted")
            return self.script.pop(0)

    def _new_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def completion(self, body: dict[str, Any], reply: Reply, size: int) -> dict[str, Any]:
        n = self._new_id()
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{n}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
                }
                for i, (name, args) in enumerate(reply.calls)
            ]
        prompt, completion = reply.usage or (size // 4, max(1, len(json.dumps(message)) // 4))
        return {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.calls else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def start(self) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, param: str | None = None, headers: dict | None = None) -> None:
                kind = "invalid_request_error" if status == 400 else "server_error"
                self._json(status, {"error": {"message": message, "type": kind, "param": param, "code": None}}, headers)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._error(404, f"no route {self.path}")
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._error(400, "the body is not JSON")
                    return
                record = Recorded(body=body, size=len(raw))
                with server._lock:
                    server.requests.append(record)
                problems = protocol_errors(body)
                if problems:
                    record.status, record.error = 400, problems[0][1]
                    with server._lock:
                        server.violations += [f"request {len(server.requests)}: {p}: {m}" for p, m in problems]
                    self._error(400, problems[0][1], problems[0][0])
                    return
                if server.latency_s:
                    time.sleep(server.latency_s)
                action = server._next(body)
                if isinstance(action, str):
                    action = Reply(text=action)
                if isinstance(action, Hang):
                    time.sleep(action.seconds)
                    self.close_connection = True
                    return
                if isinstance(action, Drop):
                    self.close_connection = True
                    return
                if isinstance(action, Fail):
                    record.status, record.error = action.status, action.message
                    self._error(action.status, action.message, headers=action.headers)
                    return
                if isinstance(action, Garbage):
                    self.send_response(200)
                    self.send_header("Content-Type", action.content_type)
                    self.send_header("Content-Length", str(len(action.body)))
                    self.end_headers()
                    self.wfile.write(action.body)
                    return
                result = server.completion(body, action, len(raw))
                if body.get("stream"):
                    self._stream(result, include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
                else:
                    self._json(200, result)

            def _stream(self, result: dict[str, Any], include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {k: result[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
                message, finish = result["choices"][0]["message"], result["choices"][0]["finish_reason"]
                deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
                text = message.get("content") or ""
                words = text.split(" ") if text else []
                deltas += [{"content": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]
                deltas += [{"tool_calls": [{"index": i, **c}]} for i, c in enumerate(message.get("tool_calls") or [])]
                chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
                chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                if include_usage:
                    chunks.append({**base, "choices": [], "usage": result["usage"]})
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-openai").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def chat_model(self, **overrides: Any) -> Any:
        """A ``ChatOpenAI`` for this server (no retries of its own, a short timeout, usage on streams)."""
        from langchain_openai import ChatOpenAI

        kwargs = {
            "model": "fake-vl",
            "base_url": self.base_url,
            "api_key": "test",
            "max_retries": 0,
            "timeout": 5.0,
            "temperature": 0.0,
            "stream_usage": True,
        }
        return ChatOpenAI(**{**kwargs, **overrides})
