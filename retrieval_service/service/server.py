"""Running an app with uvicorn: in the foreground (``geoagent serve``) or on a background thread
bound to a free loopback port (tests and benchmarks talk to it over real HTTP)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from retrieval_service.core.errors import ConfigError


class BackgroundServer:
    """``with BackgroundServer(app) as url: ...``: the app served on 127.0.0.1 at a free port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, start_timeout_s: float = 30.0) -> None:
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", timeout_keep_alive=30)
        self.server = uvicorn.Server(self.config)
        self.start_timeout_s = start_timeout_s
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> str:
        self._thread = threading.Thread(target=self.server.run, name="geoagent-test-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the HTTP server did not start", "check the port is free and the app builds")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve ``app`` until interrupted."""
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=30)
