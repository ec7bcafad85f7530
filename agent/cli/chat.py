"""`geoagent chat`: a terminal chat about where photos were taken.

Every photo gets its own thread (``agent.conversation.threads``); questions go to the current photo's thread,
through the agent's graph with the tools and the photo when an LMM is configured. While a step runs
a status line names it; the LMM's text is streamed as it is generated. Line editing and a
persistent input history come from prompt_toolkit on a terminal; piped input is read line by line.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.context import settings_from
from retrieval_service.core.errors import GeoAgentError

HELP = (
    "Commands: /image PATH (attach a photo), /history, /map [FILE.html], /help, /quit. "
    "Anything else is a question about the current photo."
)


def _lines(history_file: Path | None) -> Iterator[str]:
    """Input lines: prompt_toolkit (line editing, history) on a terminal, else stdin as it comes."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        session: Any = PromptSession(history=FileHistory(str(history_file)) if history_file else InMemoryHistory())
        while True:
            try:
                yield session.prompt("you> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
    else:
        yield from sys.stdin


class Display:
    """What the chat shows while a run goes: a status line with the running step, tool results,
    the LMM's text token by token."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.status: Any = None
        self.streamed = ""

    def run(self) -> Any:
        self.streamed = ""
        if self.console.is_terminal:
            self.status = self.console.status("thinking...")
            return self.status
        self.status = None
        return nullcontext()

    def __call__(self, event: dict[str, Any]) -> None:
        from rich.markup import escape

        kind = event.get("type")
        if kind in ("tool_start", "node") and self.status is not None:
            what = event.get("tool") or event.get("node")
            self.status.update(f"running {what}..." if kind == "tool_start" else f"step {what} done...")
        elif kind == "tool":
            style = "red" if event.get("error") else "dim"
            label = "LMM request" if event["tool"] == "lmm" else event["tool"]
            self.console.print(f"  [{style}]- {escape(label)}: {escape(event['summary'])} ({event['latency_ms']:.0f} ms)[/]")
        elif kind == "token":
            self.console.print(event["text"], end="", markup=False, highlight=False)
            self.streamed += event["text"]


def chat(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Option("--session", help="Name of a saved conversation to start or resume.")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="How photos are analysed (policy, agent, rag).")] = None,
) -> None:
    """Chat: attach photos with /image PATH and ask where they were taken, and why. Follow-up questions
    run the agent again with its tools when an LMM is configured (GEOAGENT_LLM_MODEL)."""
    from rich.console import Console

    from agent.api import load_agent
    from agent.conversation.session import ChatSession
    from agent.conversation.threads import sqlite_checkpointer

    if session is not None and not session.strip():
        raise GeoAgentError("the session name is empty", "pass --session NAME with a non-empty name")
    console = Console(highlight=False, soft_wrap=True)
    settings = settings_from(ctx)
    with ExitStack() as stack:
        if session is None:
            from langgraph.checkpoint.memory import InMemorySaver

            saver: Any = InMemorySaver()
        else:
            saver = stack.enter_context(sqlite_checkpointer(settings.data_dir / "sessions.sqlite"))
        agent = load_agent(settings, mode=mode, checkpointer=saver)
        sess = ChatSession(agent, session=session or "default")
        console.print(f"geoagent chat ({agent.mode} mode). {HELP}")
        if not sess.can_follow_up:
            console.print(
                "No LMM is configured: each photo runs the no-LMM policy and follow-up questions are answered from its analysis."
            )
        if session and (old := sess.history()):
            console.print(f"Resumed session '{session}' with {len(old)} earlier messages (/history shows them).")
        display = Display(console)
        history_file = settings.data_dir / "chat_input_history" if session else None
        if history_file is not None:
            history_file.parent.mkdir(parents=True, exist_ok=True)
        for raw in _lines(history_file):
            line = raw.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            try:
                _handle(line, sess, console, display)
            except GeoAgentError as exc:
                console.print(f"error: {exc.message}" + (f"\n  fix: {exc.hint}" if exc.hint else ""), style="red", markup=False)
            except Exception as exc:
                if getattr(ctx.find_root().obj, "debug", False):
                    raise
                console.print(f"error: {type(exc).__name__}: {exc}", style="red", markup=False)


def _handle(line: str, sess: Any, console: Any, display: Display) -> None:
    """One input line: a command or a question."""
    if line == "/help":
        console.print(HELP)
    elif line.startswith("/image"):
        try:
            args = shlex.split(line[len("/image") :])
        except ValueError:  # e.g. an unclosed quote: a bad line, not the end of the chat
            args = []
        if len(args) != 1:
            console.print('usage: /image PATH (quote a path with spaces: /image "my photo.jpg")', style="red", markup=False)
            return
        with display.run():
            sess.attach(args[0], on_event=display)
        if display.streamed:
            console.print()
        console.print(sess.history()[-1].content, markup=False)
    elif line == "/history" or line.startswith("/history "):
        transcript = sess.history()
        if not transcript:
            console.print("(nothing yet)")
        for msg in transcript:
            who = "you" if msg.type == "human" else "geoagent"
            console.print(f"{who}: {msg.content}", markup=False)
    elif line == "/map" or line.startswith("/map "):
        from agent.mapview import write_map

        args = shlex.split(line[len("/map") :])
        target = Path(args[0]) if args else Path(f"geoagent-chat-{sess.session}.html")
        if target.suffix.lower() not in (".html", ".htm"):
            raise GeoAgentError(f"the map file {target} does not end in .html", "use /map out.html")
        preds = [p for p in (sess.threads.values(t["thread_id"]).get("prediction") for t in sess.photos()) if p is not None]
        if not preds:
            console.print("No photo yet: attach one with /image PATH.")
            return
        console.print(f"map of {len(preds)} photos written to {write_map(preds, target)}", markup=False)
    elif line.startswith("/"):
        console.print(f"unknown command {line.split()[0]}. {HELP}", markup=False)
    else:
        with display.run():
            reply = sess.ask(line, on_event=display)
        if display.streamed:
            console.print()
        if not reply.strip() or reply.strip() not in display.streamed:  # not already shown token by token
            console.print(reply, markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("chat")(chat)
