"""Helpers for the inference-server tests: an in-process ASGI client and real server processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from contract.serving import ScoringSettings
from serving.app import build_app
from serving.scorers import make_scorer

HERE = Path(__file__).parent
SCRIPTS = HERE / "scripts"
REPO = HERE.parent.parent


class AppClient:
    """Synchronous client over ``httpx.ASGITransport`` (no sockets) for routing and contract tests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def make_client(env: dict[str, str], load: bool = True) -> tuple[AppClient, Any]:
    """Build the scoring app for ``env`` (Azure's variables); returns the client and the scorer."""
    settings = ScoringSettings.from_env(env)
    scorer = make_scorer(settings)
    if load:
        scorer.load()
    return AppClient(build_app(scorer, settings)), scorer


class ServerProcess:
    """A ``python -m serving`` process on 127.0.0.1 with an ephemeral port; stderr goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in close())
        full_env = {**os.environ, **env}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(REPO),
        )
        self.port = 0

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log)
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"server did not listen within {timeout} s:\n{self.log}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/ready").status_code == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"server not ready within {timeout} s:\n{self.log}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def connect_refused(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False
