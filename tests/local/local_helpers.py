"""Helpers of the local tests: real upstream servers (uvicorn in threads) and a real router process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Upstream:
    """A fake deployment: answers JSON naming itself and records every request it saw."""

    name: str
    mode: str = "ok"  # ok | error (500) | slow (sleeps `delay` s)
    delay: float = 3.0
    seen: list[dict] = field(default_factory=list)
    port: int = 0
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.seen.append(
            {
                "client_port": scope["client"][1],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": headers,
                "body": body,
                "method": scope["method"],
            }
        )
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if self.mode == "chunked":  # no content-length: the server frames it with chunked encoding
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for part in (b"first,", b"second,", b"third"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        status = 500 if self.mode == "error" else 200
        payload = json.dumps({"deployment": self.name, "body_bytes": len(body)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-upstream", self.name.encode()),
                    (b"connection", b"x-secret-hop"),
                    (b"x-secret-hop", b"1"),
                    (b"keep-alive", b"timeout=5"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def start(self) -> Upstream:
        return self.start_on(0)

    def start_on(self, port: int) -> Upstream:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self, log_level="warning", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, f"upstream {self.name} did not start"
            time.sleep(0.01)
        self._sock = sock
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
            self._sock.close()
            self.server = None


def _upstreams_fixture() -> Iterator[dict[str, Upstream]]:
    """Three started fake deployments: alice, bob, carol."""
    ups = {name: Upstream(name).start() for name in ("alice", "bob", "carol")}
    yield ups
    for up in ups.values():
        up.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RouterProcess:
    proc: subprocess.Popen
    port: int
    config_path: Path
    log: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, config: dict) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        os.replace(tmp, self.config_path)

    def reload(self, config: dict) -> None:
        self.write_config(config)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)


def router_config(ups: dict[str, Upstream], traffic: dict, mirror: dict | None = None, **extra) -> dict:
    return {
        "table": {"endpoint": "cars", "deployments": list(ups), "traffic": traffic, "mirror_traffic": mirror or {}},
        "upstreams": {name: up.url for name, up in ups.items()},
        "timeouts_s": {name: 5.0 for name in ups},
        **extra,
    }


def _start_router_fixture(tmp_path) -> Iterator:
    """Start ``python -m endpoints.local.router`` with a config dict (and extra CLI args); SIGTERM after the test."""
    started: list[RouterProcess] = []

    def start(config: dict, args: tuple[str, ...] = ()) -> RouterProcess:
        path = tmp_path / f"routes-{len(started)}.json"
        port = free_port()
        log_path = tmp_path / f"router-{len(started)}.log"
        rp = RouterProcess(None, port, path, log_path.open("wb"))  # type: ignore[arg-type]
        rp.write_config(config)
        rp.proc = subprocess.Popen(
            [sys.executable, "-m", "endpoints.local.router", "--config", str(path), "--port", str(port), *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=rp.log,
        )
        started.append(rp)
        deadline = time.monotonic() + 20
        while True:
            assert rp.proc.poll() is None, log_path.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "router did not start"
                time.sleep(0.05)
        return rp

    yield start
    for rp in started:
        rp.proc.send_signal(signal.SIGTERM)
        try:
            rp.proc.wait(10)
        except subprocess.TimeoutExpired:
            rp.proc.kill()
            rp.proc.wait()
        rp.log.close()


def _client_fixture() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


class RawUpstream:
    """A misbehaving deployment on a raw socket: reads one request per connection, then does ``behaviour``.

    ``behaviour``: ``close`` (closes without a byte), ``half-head`` (part of a status line, then closes),
    ``half-body`` (a head announcing 100 bytes, 10 of them, then closes), ``until-close`` (a body framed by
    neither length nor chunks, ended by closing), ``plain`` (201 with a few headers and a length), ``hop``
    (hop-by-hop headers in mixed case), ``early`` (answers 401 after the head, then reads the rest until the
    peer closes). Serves at most ``max_connections`` connections.
    """

    def __init__(self, behaviour: str, max_connections: int = 20) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.carried: list[bytes] = []  # ``early``: what each connection carried, once it is closed
        self.sock = socket.socket()
        if behaviour == "early":
            # A fixed receive buffer (no autotuning, which may grow to tcp_rmem's maximum, 32 MiB on some kernels):
            # what the router can have handed over before the answer comes is bounded by its send buffer and this.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._max = max_connections
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        served = 0
        while not self._stop.is_set() and served < self._max:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            served += 1
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if self.behaviour != "early":
                    # The whole body is read before answering: closing with unread bytes would send a reset, not
                    # the end of the stream, and the router would rightly see a cut-off answer.
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
                    while length is not None and len(body) < int(length.group(1)):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        body += chunk
                        data += chunk
                self.requests.append(data)
                if self.behaviour == "half-head":
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-le")
                elif self.behaviour == "half-body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    time.sleep(0.1)
                elif self.behaviour == "plain":
                    conn.sendall(
                        b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Custom: a, b\r\n"
                        b"Content-Length: 5\r\n\r\nhello"
                    )
                elif self.behaviour == "hop":
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nConnection: X-Drop, close\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n"
                        b"Proxy-Connection: keep-alive\r\nX-Keep: 2\r\nContent-Length: 2\r\n\r\nok"
                    )
                elif self.behaviour == "early":
                    conn.sendall(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope")
                    carried = [data]
                    with contextlib.suppress(OSError):
                        while chunk := conn.recv(65536):
                            carried.append(chunk)
                    self.carried.append(b"".join(carried))
                elif self.behaviour == "until-close":
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n")
                    for part in (b"no ", b"length ", b"here"):
                        conn.sendall(part)
                        time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def read_responses(sock: socket.socket, count: int, timeout: float = 10.0) -> list[dict]:
    """Read ``count`` HTTP responses from a raw socket (``status``, ``headers`` lower-cased, ``body``).

    A response cut short raises ``ConnectionError``; interim 1xx responses are returned like the others.
    """
    import httptools

    done: list[dict] = []

    class _Sink:
        def __init__(self) -> None:
            self.current: dict = {"headers": {}, "body": b""}

        def on_header(self, name: bytes, value: bytes) -> None:
            self.current["headers"][name.decode().lower()] = value.decode()

        def on_body(self, body: bytes) -> None:
            self.current["body"] += body

        def on_message_complete(self) -> None:
            self.current["status"] = parser.get_status_code()
            done.append(self.current)
            self.current = {"headers": {}, "body": b""}

    parser = httptools.HttpResponseParser(_Sink())
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while len(done) < count:
        assert time.monotonic() < deadline, f"only {len(done)} of {count} responses in {timeout} s"
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed after {len(done)} of {count} responses")
        parser.feed_data(data)
    return done


def recv_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the peer sends until it closes, and the seconds that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk
