"""The toy scoring app behind the frontend, served by uvicorn in a thread on 127.0.0.1:<ephemeral>, and the keys the
tests give it. A named module (not ``conftest``): test folders each have a conftest, and ``from conftest import``
finds whichever was imported first."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn
from frontend_toy_app import create_toy_app

from serving.frontend import Frontend, FrontendSettings, build_frontend

PRIMARY = "p" * 40
SECONDARY = "s" * 40
SIGNING_KEY = b"k" * 48
ENDPOINT = "cars"


@dataclass
class Served:
    """A running server: its base URL, the frontend object and the readiness flag it reads."""

    url: str
    port: int
    frontend: Frontend
    ready: dict = field(default_factory=lambda: {"ready": True})


@contextlib.contextmanager
def serve_frontend(settings: FrontendSettings, ready: dict | None = None, tracer_provider=None) -> Iterator[Served]:
    """Serve the toy app behind the frontend with ``settings`` until the block ends."""
    ready = {"ready": True} if ready is None else ready
    frontend = build_frontend(create_toy_app(), settings, lambda: ready["ready"], tracer_provider)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        frontend,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_keep_alive=int(settings.keepalive_timeout_s),
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", port, frontend, ready)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
