"""`geoagent serve`: the retrieval API, the agent API and the web chat over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from agent.cli.context import settings_from


def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option("--host", metavar="HOST", help="Address to listen on (0.0.0.0 for every interface, e.g. in a container)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="TCP port.")] = 8000,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            metavar="MODE",
            help="How /v1/locate analyses photos (policy, agent, rag, retrieval, rerank); default: agent with an LMM, else policy.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            envvar="GEOAGENT_SERVICE_API_KEY",
            help="Require this key on every /v1 request (Authorization: Bearer or X-API-Key).",
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            metavar="N",
            help="Retrieval requests (search, embed, verify) worked on at once (GEOAGENT_SERVICE_MAX_CONCURRENCY, default 4).",
        ),
    ] = None,
    agent_concurrency: Annotated[
        int | None,
        typer.Option(
            "--agent-concurrency",
            metavar="N",
            help="Agent runs (locate, streams, follow-ups) worked on at once (GEOAGENT_SERVICE_AGENT_MAX_CONCURRENCY, default 2).",
        ),
    ] = None,
    allow_private_urls: Annotated[
        bool, typer.Option("--allow-private-urls", help="Let URL inputs reach loopback/private/link-local addresses.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL", help="uvicorn log level.")] = "info",
) -> None:
    """Serve geoagent over HTTP: the web chat at /, the API under /v1 (docs at /docs).

    Retrieval: POST /v1/search, /v1/embed, /v1/verify, GET /v1/collections, /healthz, /readyz.
    Agent: POST /v1/locate (multipart field 'image', or JSON {"url": ...}) -> the Prediction's JSON;
    POST /v1/locate/stream -> server-sent events (steps, LMM tokens, the Prediction); conversations
    and follow-up questions under /v1/threads, kept in SQLite under the data dir or, with
    GEOAGENT_DATABASE_URL=postgresql://..., in PostgreSQL shared by every replica. Limits come from
    the GEOAGENT_SERVICE_* settings.
    """
    from agent.api import GeoAgent, load_agent
    from agent.conversation.store import open_conversations
    from agent.conversation.threads import Threads
    from agent.web.app import create_app
    from retrieval_service.service.server import serve as run_server
    from retrieval_service.service.settings import ServiceSettings

    settings = settings_from(ctx)
    service = settings_from(
        ctx,
        ServiceSettings,
        service_api_key=api_key,
        service_max_concurrency=max_concurrency,
        service_agent_max_concurrency=agent_concurrency,
        service_allow_private_urls=allow_private_urls or None,
    )
    agent = load_agent(settings, mode=mode)
    with open_conversations(settings) as store:
        threads = None
        if isinstance(agent, GeoAgent):  # the chat's conversations: the same agent's graph on a saver
            chat_agent = load_agent(
                settings,
                mode=agent.mode,
                services=agent.services,
                chat_model=agent.chat_model,
                checkpointer=store.checkpointer,
                breaker=agent.breaker,
            )
            threads = Threads(chat_agent)
        app = create_app(agent, service, retriever=agent.services.retriever, threads=threads, uploads=store.uploads)
        where = "PostgreSQL (shared by replicas)" if store.shared else "SQLite"
        typer.echo(
            f"geoagent ({agent.mode} mode) on http://{host}:{port}/  (API docs: /docs; readiness: /readyz; "
            f"conversations: {where})",
            err=True,
        )
        run_server(app, host, port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
