"""Helpers of the SDK tests: a two-deployment endpoint folder, and a recording HTTP server for retry tests."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

REPO = Path(__file__).resolve().parents[2]

SCORE = textwrap.dedent(
    """
    import json, os

    def init():
        pass

    def run(raw):
        return {"deployment": os.environ["SERVICE_VERSION"], "body": json.loads(raw)}
    """
)


def deployment_yaml(name: str) -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        endpoint_name: shop
        code_configuration:
          code: ../code
          scoring_script: score.py
        environment:
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
        instance_type: Standard_DS3_v2
        """
    )


def make_project(root: Path, auth: str = "key") -> Path:
    """``shop``: deployments blue (90 %) and green (10 %), each answering its own name and the body it got."""
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "code" / "score.py").write_text(SCORE)
    (root / "endpoint.yml").write_text(f"name: shop\nauth_mode: {auth}\ntraffic:\n  blue: 90\n  green: 10\n")
    for name in ("blue", "green"):
        (root / "deployments" / f"{name}.yml").write_text(deployment_yaml(name))
    return root


@dataclass
class Scripted:
    """An HTTP server answering from a script of (status, headers) pairs, then 200; records every request."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/score"

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"path": scope["path"], "method": scope["method"], "headers": headers, "body": body})
        status, extra = self.script.pop(0) if self.script else (200, {})
        if "x-sleep" in extra:  # answer late (a timeout test); bounded by the value
            await asyncio.sleep(float(extra["x-sleep"]))
        payload = b'{"ok": true}' if status == 200 else b'{"error": "busy"}'
        out = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", f"rid-{len(self.seen)}".encode()),
        ]
        out += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    def start(self) -> Scripted:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self.server = uvicorn.Server(uvicorn.Config(self, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "scripted server did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self._sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(check, timeout_s: float = 20.0, poll_s: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``check()`` until it returns something truthy (access-log lines are flushed by a ticker)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not true within {timeout_s} s: {check}"
        time.sleep(poll_s)
