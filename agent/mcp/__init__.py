"""geoagent over the Model Context Protocol (``geoagent mcp``): ``locate`` and the evidence tools for
MCP clients, on stdio or streamable HTTP on loopback. Built on the official ``mcp`` SDK, imported on
first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.mcp.server import answer_of, build_server

__all__ = ["LOOPBACK", "answer_of", "build_server", "check_loopback"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
"""The only hosts the HTTP transport listens on: it has no authentication."""


def check_loopback(host: str) -> str:
    """``host`` when it is a loopback address; a ConfigError naming the fix otherwise."""
    from retrieval_service.core.errors import ConfigError

    if host not in LOOPBACK:
        raise ConfigError(
            f"the MCP server listens on loopback only, not {host!r} (it has no authentication)",
            "use --host 127.0.0.1 (or ::1) and reach it through an SSH tunnel or a proxy that authenticates",
        )
    return host


def __getattr__(name: str) -> Any:
    if name in ("answer_of", "build_server"):
        from agent.mcp import server

        return getattr(server, name)
    raise AttributeError(f"module 'agent.mcp' has no attribute {name!r}")
