"""`geoagent mcp`: geoagent as a Model Context Protocol server (stdio, or streamable HTTP on loopback)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agent.cli.context import settings_from


def mcp(
    ctx: typer.Context,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP on loopback instead of stdio.")] = False,
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="Loopback address for --http.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=0, max=65535, help="TCP port for --http (0: any free).")
    ] = 8765,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", metavar="MODE", help="How locate analyses photos by default (policy, agent, rag, retrieval, rerank)."
        ),
    ] = None,
) -> None:
    """Serve `locate` and the evidence tools (read_exif, retrieve, cluster_candidates, reverse_geocode,
    read_text, segment_scene, verify_locations) to MCP clients: desktop assistants, other agents.

    stdio (the default): a client starts `geoagent mcp` itself and talks over its stdin/stdout.
    --http: streamable HTTP at http://HOST:PORT/mcp, loopback only (no authentication); the address
    is printed on stderr once the server listens. Photos are local paths or http(s) URLs."""
    import anyio

    from agent.api import load_agent
    from agent.mcp import build_server, check_loopback

    if http:
        check_loopback(host)
    settings = settings_from(ctx)
    server = build_server(load_agent(settings, mode=mode))
    if not http:
        anyio.run(server.run_stdio_async)
        return
    import uvicorn

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def announce_when_listening() -> None:
        while not uv.started:
            await anyio.sleep(0.05)
        bound = uv.servers[0].sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"geoagent MCP server on http://{shown}:{bound[1]}/mcp (streamable HTTP)", file=sys.stderr, flush=True)

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(announce_when_listening)
            await uv.serve()
            tasks.cancel_scope.cancel()

    anyio.run(main)


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)
