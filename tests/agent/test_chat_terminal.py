"""`geoagent chat` on a real terminal (Debian's tmux), with a scripted OpenAI-compatible LMM on
loopback: the screen shows the streamed follow-up reply exactly once. Before, the streamed tokens
were printed inside the status spinner, overwritten by it, then skipped as "already shown": after
"could it be Belgium instead?" the screen showed "- LMM request: answered (202 ms)" and the next
prompt, never the reply. Log lines written while the status line spins get lines of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.waiting import wait_for

TMUX = shutil.which("tmux")
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux; .ci/run does)")

LAUNCHER = """
import logging
import sys

import agent.api as api
from tests.agent.fakes import _geocode, make_fake_tools


def geocode(**kwargs):  # a library's warning while the status line spins
    logging.getLogger("geoagent.test").warning("a warning logged during the run")
    return _geocode(**kwargs)


real = api.load_agent
api.load_agent = lambda settings=None, **kw: real(settings, tools=make_fake_tools(overrides={"reverse_geocode": geocode}), **kw)
from agent.cli import main

sys.exit(main(["chat"]))
"""


class Tmux:
    """One tmux server of its own (its own socket), one session, one window."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"geoagent-test-{uuid.uuid4().hex[:8]}"
        self.tmp_path = tmp_path

    def __call__(self, *args: str) -> str:
        assert TMUX is not None
        return subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        flags = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
        self("-f", "/dev/null", "new-session", "-d", "-s", "chat", "-x", "160", "-y", "50", *flags, command)

    def screen(self) -> str:
        """Everything the pane showed, scroll-back included, wrapped lines joined."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "chat")

    def type(self, line: str) -> None:
        self("send-keys", "-t", "chat", "-l", line)
        self("send-keys", "-t", "chat", "Enter")

    def stop(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True)


def test_the_terminal_chat_shows_the_streamed_follow_up_reply_exactly_once(photo, tmp_path):
    from evals.fake_llm_server import FakeOpenAI, Reply

    final = {"lat": 48.86, "lon": 2.35, "confidence": 0.7, "rationale": "the Paris cluster"}
    seen = "Stone facades and a wide boulevard."
    reply = "Brussels scores lower than Paris on every check, so I keep Paris."
    script = [
        Reply(text=seen, calls=[("submit_answer", final)]),
        Reply(calls=[("verify_locations", {"candidates": [{"lat": 50.85, "lon": 4.35}]})]),
        Reply(text=reply),
    ]
    launcher = tmp_path / "chat_launcher.py"
    launcher.write_text(LAUNCHER)
    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "GEOAGENT_DATA_DIR": str(tmp_path / "data"),
        "GEOAGENT_LLM_MODEL": "fake-vl",
        "TERM": "xterm-256color",
        "HOME": str(tmp_path),
    }
    tmux = Tmux(tmp_path)
    with FakeOpenAI(script) as server:
        env["GEOAGENT_LLM_BASE_URL"] = server.base_url
        try:
            tmux.start(f"cd {REPO} && {sys.executable} {launcher}; echo CHAT-EXITED $?; sleep 600", env)
            prompts = lambda n: lambda: tmux.screen().count("you>") >= n or "CHAT-EXITED" in tmux.screen()  # noqa: E731
            wait_for(prompts(1), "the chat's first prompt")
            tmux.type(f"/image {photo}")
            wait_for(prompts(2), "the analysis and the next prompt")
            tmux.type("could it be Belgium instead?")
            wait_for(prompts(3), "the follow-up's reply and the next prompt")
            screen = tmux.screen()
            (tmp_path / "screen.txt").write_text(screen)
            assert "CHAT-EXITED" not in screen, screen
            assert screen.count(reply) == 1, screen  # streamed, shown once, not overwritten, not repeated
            assert screen.count(seen) == 1, screen
            assert "- LMM request:" in screen and "- verify_locations:" in screen
            logged = [line for line in screen.splitlines() if "a warning logged during the run" in line]
            assert logged == ["WARNING geoagent.test: a warning logged during the run"], logged  # a line of its own
            after = screen.split("could it be Belgium instead?", 1)[1]
            assert after.index("- verify_locations:") < after.index(reply)  # in the order it happened
            tmux.type("/history")
            wait_for(prompts(4), "the history")
            assert tmux.screen().count(reply) == 2  # once live, once in /history
            tmux.type("/quit")
            wait_for(lambda: "CHAT-EXITED 0" in tmux.screen(), "the chat to exit")
        finally:
            tmux.stop()
    assert server.violations == [] and len(server.requests) == 3
