"""`geoagent serve --host H --port P` as a real process: ready, answers /v1/locate, stops on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.agent.web.conftest import jpeg
from tests.waiting import GUARD_S, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_serves_until_interrupted(gallery_env):
    port = free_port()
    env = {**os.environ, **gallery_env, "GEOAGENT_SEGMENTER": "none", "GEOAGENT_SERVICE_API_KEY": "k"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=GUARD_S).status_code == 200
            except httpx.TransportError:  # not listening yet
                return False

        wait_for(ready, "/readyz to answer 200", proc=proc, poll_s=0.5)
        photo = {"image": ("a.jpg", jpeg((10, 200, 90)), "image/jpeg")}
        assert httpx.post(f"{url}/v1/locate", files=photo, timeout=GUARD_S).status_code == 401
        resp = httpx.post(f"{url}/v1/locate", files=photo, headers={"Authorization": "Bearer k"}, timeout=GUARD_S)
        assert resp.status_code == 200 and -90 <= resp.json()["lat"] <= 90
        assert httpx.get(f"{url}/v1/threads", headers={"X-API-Key": "k"}, timeout=GUARD_S).json() == []
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 0, out
    assert f"on http://127.0.0.1:{port}/" in out
