"""`geoagent chat`: a terminal chat about where photos were taken.

Every photo gets its own thread (``agent.conversation.threads``); questions go to the current photo's thread,
through the agent's graph with the tools and the photo when an LMM is configured. While a step runs
a status line names it; the LMM's text is streamed above it as it is generated, and every reply is
printed exactly once; log lines go through the same console, above the status line. Line editing
and a persistent input history come from prompt_toolkit on a terminal; piped input is read line by
line.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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


class ConsoleLogHandler(logging.Handler):
    """Log records printed through the chat's console, so that rich keeps them above the live status
    line instead of splicing them into it."""

    def __init__(self, console: Any, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(formatter or logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            style = "red" if record.levelno >= logging.ERROR else "yellow" if record.levelno >= logging.WARNING else "dim"
            self.console.print(self.format(record), style=style, markup=False, highlight=False, soft_wrap=True)
        except Exception:  # a log line must never take the chat down
            self.handleError(record)


@contextmanager
def logs_through(console: Any) -> Iterator[None]:
    """While the chat runs, the root logger's stream handlers print through ``console``."""
    root = logging.getLogger()
    streams = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    handler = ConsoleLogHandler(console, streams[0].formatter if streams else None)
    handler.setLevel(min((h.level for h in streams), default=logging.NOTSET))
    for h in streams:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for h in streams:
            root.addHandler(h)


class Display:
    """What the chat shows while a run goes. On a terminal: a live status line (a spinner with the
    running step) at the bottom, the LMM's text streamed just above it, tool results and log lines
    printed above both; a line of the LMM's text is printed once, when it is complete (the partial
    line lives in the status area), and the rest when the run ends. Piped: plain text as it comes.
    Every piece of text is printed exactly once; ``streamed`` holds what the LMM's stream printed, so
    the chat does not print a reply again."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.live: Any = None
        self.step = "thinking..."
        self.partial = ""
        self.streamed = ""

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text

        spinner = Spinner("dots", text=Text(self.step, style="dim"))
        return Group(Text(self.partial), spinner) if self.partial else spinner

    @contextmanager
    def run(self) -> Iterator[None]:
        """One run (an analysis or a question): the live status while it goes, the text left after."""
        from rich.live import Live

        self.streamed, self.partial, self.step = "", "", "thinking..."
        if not self.console.is_terminal:
            try:
                yield
            finally:
                self._finish()
            return
        with Live(self._renderable(), console=self.console, refresh_per_second=10, transient=True) as live:
            self.live = live
            try:
                yield
            finally:
                self.live = None
        self._finish()

    def _finish(self) -> None:
        if self.partial:
            self.console.print(self.partial, markup=False, highlight=False)
            self.partial = ""
        elif self.streamed and not self.console.is_terminal and not self.streamed.endswith("\n"):
            self.console.print()

    def _flush(self) -> None:
        """The streamed text so far ended with its line, before a tool line (so the order is kept)."""
        if self.live is not None and self.partial:
            self.console.print(self.partial, markup=False, highlight=False)
            self.partial = ""
            self.live.update(self._renderable())
        elif self.live is None and self.streamed and not self.streamed.endswith("\n"):
            self.console.print()
            self.streamed += "\n"

    def __call__(self, event: dict[str, Any]) -> None:
        from rich.markup import escape

        kind = event.get("type")
        if kind in ("tool_start", "node") and self.live is not None:
            what = event.get("tool") or event.get("node")
            self.step = f"running {what}..." if kind == "tool_start" else f"step {what} done..."
            self.live.update(self._renderable())
        elif kind == "tool":
            self._flush()
            style = "red" if event.get("error") else "dim"
            label = "LMM request" if event["tool"] == "lmm" else event["tool"]
            self.console.print(f"  [{style}]- {escape(label)}: {escape(event['summary'])} ({event['latency_ms']:.0f} ms)[/]")
        elif kind == "token":
            text = event["text"]
            self.streamed += text
            if self.live is None:
                self.console.print(text, end="", markup=False, highlight=False)
                return
            self.partial += text
            if "\n" in self.partial:  # complete lines go above the status, printed once
                done, self.partial = self.partial.rsplit("\n", 1)
                self.console.print(done, markup=False, highlight=False)
            self.live.update(self._renderable())

    def already_shown(self, reply: str) -> bool:
        """Whether the run's stream printed ``reply`` already."""
        return bool(reply.strip()) and reply.strip() in self.streamed


def chat(
    ctx: typer.Context,
    session: Annotated[
        str | None, typer.Option("--session", metavar="NAME", help="Name of a saved conversation to start or resume.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", metavar="MODE", help="How photos are analysed (policy, agent, rag).")
    ] = None,
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
        stack.enter_context(logs_through(console))
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
        if not display.already_shown(reply):  # a reply the stream did not print (rules, a changed answer)
            console.print(reply, markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("chat")(chat)
