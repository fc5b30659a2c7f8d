"""Fixtures: the toy scoring app behind the frontend, served by uvicorn in a thread on 127.0.0.1:<ephemeral>."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
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


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "primary").write_text(PRIMARY + "\n")
    (folder / "secondary").write_text(SECONDARY + "\n")
    return folder


@pytest.fixture
def signing_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "token_signing_key"
    path.write_bytes(SIGNING_KEY)
    return path


@pytest.fixture
def served() -> Iterator[Callable[..., contextlib.AbstractContextManager[Served]]]:
    """Factory: ``with served(**settings) as s:`` serves the toy app behind a frontend built from settings."""

    def factory(
        ready: dict | None = None, tracer_provider=None, **values: object
    ) -> contextlib.AbstractContextManager[Served]:
        return serve_frontend(FrontendSettings(**values), ready, tracer_provider)

    yield factory


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c
