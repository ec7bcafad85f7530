"""`geoagent chat`: a terminal chat about where photos were taken."""

from __future__ import annotations

import shlex
import sqlite3
import sys
from contextlib import ExitStack
from typing import Annotated, Any, Optional

import typer

from agent.cli.context import settings_from
from retrieval_service.core.errors import GeoAgentError

HELP = "Commands: /image PATH (attach a photo), /help, /quit. Anything else is a question about the photos."


def _checkpointer(stack: ExitStack, settings: Any, session: str | None) -> Any:
    if session is None:
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver()
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(settings.data_dir / "sessions.sqlite"), check_same_thread=False)
    stack.callback(conn.close)
    return SqliteSaver(conn)


def chat(
    ctx: typer.Context,
    session: Annotated[Optional[str], typer.Option("--session", help="Name of a saved conversation to start or resume.")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="How photos are analysed (policy, agent, rag, ...).")] = None,
) -> None:
    """Chat: attach photos with /image PATH and ask where they were taken, and why."""
    from rich.console import Console
    from rich.markup import escape

    from agent.api import load_agent
    from agent.chat import ChatSession

    if session is not None and not session.strip():
        raise GeoAgentError("the session name is empty", "pass --session NAME with a non-empty name")
    console = Console(highlight=False, soft_wrap=True)
    settings = settings_from(ctx)
    agent = load_agent(settings, mode=mode)
    with ExitStack() as stack:
        sess = ChatSession(agent, checkpointer=_checkpointer(stack, settings, session), thread_id=session or "default",
                           chat_model=agent.chat_model)
        console.print(f"geoagent chat ({agent.mode} mode). {HELP}")
        if agent.chat_model is None:
            console.print("No LMM is configured: each photo runs the no-LMM policy and follow-up questions are "
                          "answered from its analysis.")
        if session and (old := sess.history()):
            console.print(f"Resumed session '{session}' with {len(old)} earlier messages.")

        def show(event: dict) -> None:
            if event.get("type") == "tool":
                style = "red" if event.get("error") else "dim"
                console.print(f"  [{style}]- {escape(event['tool'])}: {escape(event['summary'])} ({event['latency_ms']:.0f} ms)[/]")

        for raw in sys.stdin:
            line = raw.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            if line == "/help":
                console.print(HELP)
                continue
            if line.startswith("/image"):
                try:
                    args = shlex.split(line[len("/image"):])
                except ValueError as exc:  # e.g. an unclosed quote: a bad line, not the end of the chat
                    args = [f"error: {exc}"] * 2
                if len(args) != 1:
                    console.print("usage: /image PATH (quote a path with spaces: /image \"my photo.jpg\")", style="red", markup=False)
                    continue
                try:
                    sess.attach(args[0], on_event=show)
                except GeoAgentError as exc:
                    console.print(f"error: {exc.message}" + (f"\n  fix: {exc.hint}" if exc.hint else ""), style="red", markup=False)
                    continue
                console.print(sess.history()[-1].content, markup=False)
                continue
            if line.startswith("/"):
                console.print(f"unknown command {line.split()[0]}. {HELP}", markup=False)
                continue
            console.print(sess.ask(line), markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("chat")(chat)
