"""Replicas: two `geoagent serve` processes on one PostgreSQL database (GEOAGENT_DATABASE_URL), each
with its own data dir: a conversation begun on one is listed and continued on the other, whose
disk never saw the photo (it comes from the database). A real PostgreSQL server (Debian's
``postgresql`` package, which .ci/run installs) runs on a loopback port in a temporary folder; the
test skips, saying so, where its binaries are absent."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evals.fake_llm_server import FakeOpenAI, Reply
from tests.agent.web.conftest import jpeg
from tests.agent.web.test_serve_cli import free_port
from tests.retrieval_service.service.conftest import linked_gallery_dir
from tests.waiting import GUARD_S, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
FINAL = {"lat": 48.8584, "lon": 2.2945, "confidence": 0.8, "rationale": "the tower and the river"}


def pg_binary(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run as the ``postgres`` user when root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
    return [runuser, "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="geoagent-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    run = lambda cmd: subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=GUARD_S)  # noqa: E731
    made = run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
    assert made.returncode == 0, made.stderr
    options = f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c max_connections=60"
    started = run([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"])
    assert started.returncode == 0, started.stderr + (root / "log").read_text(errors="replace")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        wait_for(lambda: _answers(port), "PostgreSQL to accept connections")
        yield url
    finally:
        run([pg_ctl, "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _serve(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**env, "GEOAGENT_DATA_DIR": str(data_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=GUARD_S).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def _script(body: dict) -> Reply:
    """The analysis submits an answer; the follow-up question (on the other replica) is answered in words."""
    asked = "which landmark" in json.dumps(body["messages"][-3:])
    return Reply("The Eiffel Tower, by the Seine.") if asked else Reply(calls=[("submit_answer", FINAL)])


def test_a_replica_waiting_for_the_setup_lock_does_not_stall_the_others_setup(postgres_url):
    """Before: a replica waiting for the setup lock blocked in ``pg_advisory_lock`` with a transaction
    open, and LangGraph's setup on the replica holding the lock (``CREATE INDEX CONCURRENTLY``) waited
    for that transaction to end: two replicas starting together waited for each other forever."""
    import threading

    import psycopg

    from agent.conversation.checkpointers import advisory_lock

    with (
        psycopg.connect(postgres_url, autocommit=True) as holder,
        psycopg.connect(postgres_url, autocommit=True) as waiter,
        psycopg.connect(postgres_url, autocommit=True) as setup,
    ):
        setup.execute("CREATE TABLE IF NOT EXISTS setup_probe (x int)")
        got = threading.Event()

        def second_replica() -> None:
            with advisory_lock(waiter):
                got.set()

        def asked(pid: int) -> bool:
            row = setup.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            return bool(row) and "advisory_lock" in (row[0] or "")

        with advisory_lock(holder):
            thread = threading.Thread(target=second_replica, daemon=True)
            thread.start()
            wait_for(lambda: asked(waiter.info.backend_pid), "the second replica to ask for the setup lock")
            setup.execute("SET statement_timeout = '10s'")  # today's setup finishes in milliseconds
            setup.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS setup_probe_x ON setup_probe (x)")
            assert not got.is_set()  # the lock is still held: the second replica waits its turn
        thread.join(timeout=GUARD_S)
        assert got.is_set()


def test_a_setup_lock_held_too_long_is_a_clear_error(postgres_url):
    """A replica stuck while starting keeps the lock: the next one gives up with the problem and the fix."""
    import psycopg

    from agent.conversation.checkpointers import advisory_lock
    from retrieval_service.core.errors import ConfigError

    with psycopg.connect(postgres_url, autocommit=True) as stuck, psycopg.connect(postgres_url, autocommit=True) as other:
        with advisory_lock(stuck), pytest.raises(ConfigError) as info, advisory_lock(other, wait_s=1.0):
            pass
        assert "setup lock for over 1 s" in info.value.message and "stop it" in str(info.value)
        with advisory_lock(other):  # released with the block: the next replica goes on
            pass


def test_a_thread_begun_on_one_replica_is_continued_on_the_other(postgres_url, gallery_data_dir, tiny_env, tmp_path):
    """Before: conversations lived in SQLite on one machine; a second replica could not continue a thread."""
    from agent.web.events import parse_sse

    with FakeOpenAI(_script) as lmm:
        env = {
            **os.environ,
            **tiny_env,
            "GEOAGENT_SEGMENTER": "none",
            "GEOAGENT_DATABASE_URL": postgres_url,
            "GEOAGENT_LLM_MODEL": "fake-vl",
            "GEOAGENT_LLM_BASE_URL": lmm.base_url,
            "GEOAGENT_LLM_API_KEY": "test",
        }
        dirs = [linked_gallery_dir(gallery_data_dir, tmp_path / name) for name in ("a", "b")]
        (a, url_a), (b, url_b) = _serve(env, dirs[0]), _serve(env, dirs[1])
        try:
            wait_for(lambda: _ready(url_a), "replica A's /readyz", proc=a, poll_s=0.5)
            wait_for(lambda: _ready(url_b), "replica B's /readyz", proc=b, poll_s=0.5)
            photo = jpeg((120, 140, 160))
            resp = httpx.post(f"{url_a}/v1/locate/stream", files={"image": ("tower.jpg", photo, "image/jpeg")}, timeout=GUARD_S)
            events = parse_sse(resp.text)
            assert [n for n, _ in events][-2:] == ["prediction", "done"], events[-3:]
            tid = events[0][1]["thread_id"]
            listed = httpx.get(f"{url_b}/v1/threads", timeout=GUARD_S).json()
            assert [t["thread_id"] for t in listed] == [tid] and listed[0]["title"] == "tower.jpg"
            # the replicas share this machine: A's copies go, as if B ran elsewhere (B's disk never saw the photo)
            shutil.rmtree(dirs[0] / "web" / "uploads")
            shutil.rmtree(dirs[0] / "cache" / "images")
            assert not (dirs[1] / "cache" / "images").exists()
            reply = httpx.post(f"{url_b}/v1/threads/{tid}/messages", json={"text": "which landmark is it?"}, timeout=GUARD_S)
            assert reply.status_code == 200, reply.text
            assert reply.json()["reply"] == "The Eiffel Tower, by the Seine." and reply.json()["error"] is None
            assert len(list((dirs[1] / "cache" / "images").glob("*"))) == 1  # fetched from the database by its hash
            turns = httpx.get(f"{url_a}/v1/threads/{tid}", timeout=GUARD_S).json()["turns"]
            assert [t["text"] for t in turns] == ["which landmark is it?", "The Eiffel Tower, by the Seine."]
            assert any(r.body.get("messages") for r in lmm.requests[1:])  # the follow-up went to the LMM with the photo
        finally:
            outs = []
            for proc in (a, b):
                proc.send_signal(signal.SIGINT)
                outs.append(proc.communicate(timeout=GUARD_S)[0])
    assert all(p.returncode == 0 for p in (a, b)), outs
    assert all("conversations: PostgreSQL (shared by replicas)" in out for out in outs), outs
