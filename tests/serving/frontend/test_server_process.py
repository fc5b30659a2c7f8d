"""The production layer inside the real serving process (``python -m serving``): SIGTERM drain, several workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SCRIPTS = Path(__file__).parent / "scripts"
REPO = Path(__file__).resolve().parents[3]
KEY = "k" * 40


class Process:
    """``python -m serving`` on 127.0.0.1:<ephemeral> with output in a file."""

    def __init__(self, log_path: Path, workers: int, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in close())
        full = {k: v for k, v in os.environ.items() if not k.startswith(("ENDPOINTS_", "PROMETHEUS_"))}
        full.update({"AML_APP_ROOT": str(SCRIPTS), "PYTHONUNBUFFERED": "1", **env})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--entry-script", str(SCRIPTS / "sleep_score.py"),
             "--host", "127.0.0.1", "--port", "0", "--workers", str(workers)],
            stdout=self._log, stderr=subprocess.STDOUT, env=full, cwd=str(REPO),
        )  # fmt: skip
        self.port = self._wait_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log)
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"server did not listen within 30 s:\n{self.log}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2) as c:
            while time.monotonic() < deadline:
                try:
                    if c.get(self.url + "/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"server not ready within 30 s:\n{self.log}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[Process] = []

    def factory(workers: int = 1, **env: str) -> Process:
        process = Process(tmp_path / f"server-{len(started)}.log", workers, env)
        started.append(process)
        return process

    yield factory
    for process in started:
        process.close()


def _gauge(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else -1.0


@pytest.mark.slow
def test_sigterm_drains_50_in_flight_requests_then_exits_0(start, tmp_path):
    server = start(
        ENDPOINTS_MAX_CONCURRENT_REQUESTS="50",
        ENDPOINTS_REQUEST_TIMEOUT_MS="20000",
        ENDPOINTS_DRAIN_TIMEOUT_S="10",
    )

    async def main():
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        async with httpx.AsyncClient(timeout=30, limits=limits) as c:
            flights = [asyncio.create_task(c.post(server.url + "/score", content=b"2")) for _ in range(50)]
            # Wait until all 50 hold a slot (the frontend's in-flight gauge), at most 5 s.
            deadline = time.monotonic() + 5
            async with httpx.AsyncClient(timeout=5) as probe:
                while time.monotonic() < deadline:
                    if _gauge((await probe.get(server.url + "/metrics")).text, "endpoints_requests_in_flight") == 50:
                        break
                    await asyncio.sleep(0.05)
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            # A new connection now is refused, or answered 503 (draining).
            late: object
            try:
                async with httpx.AsyncClient(timeout=5) as fresh:
                    late = (await fresh.post(server.url + "/score", content=b"0")).status_code
            except httpx.ConnectError:
                late = "refused"
            results = await asyncio.gather(*flights, return_exceptions=True)
            return t0, late, results

    t0, late, results = asyncio.run(main())
    statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results]
    assert statuses == [200] * 50, server.log[-3000:]
    assert all(r.json()["slept"] == 2.0 for r in results)
    assert late in ("refused", 503)
    code = server.proc.wait(timeout=10)
    assert code == 0, server.log[-3000:]
    assert time.monotonic() - t0 < 10


@pytest.mark.slow
def test_two_workers_share_auth_readiness_and_metrics(start, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primary").write_text(KEY)
    (keys / "secondary").write_text("s" * 40)
    server = start(workers=2, ENDPOINTS_AUTH_MODE="key", ENDPOINTS_KEYS_DIR=str(keys),
                   ENDPOINTS_MAX_CONCURRENT_REQUESTS="4")  # fmt: skip
    pids = set()
    for _ in range(20):
        # A fresh connection each time: SO_REUSEPORT spreads connections over the workers.
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as c:
            r = c.post(server.url + "/score", content=b"0")
            assert r.status_code == 200, r.text
            pids.add(r.json()["pid"])
    with httpx.Client(timeout=10) as c:
        r = c.post(server.url + "/score", content=b"0")
        assert (r.status_code, r.json()) == (401, {"error": "missing or invalid credentials"})
        # Every worker's counts, whichever worker answers /metrics; other workers flush once a second.
        deadline = time.monotonic() + 3
        while True:
            metrics = c.get(server.url + "/metrics").text
            if _gauge(metrics, 'endpoints_requests_total{route="/score",status="200"}') == 20.0:
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.1)
    assert len(pids) == 2, f"20 connections all went to one worker: {pids}"
    assert _gauge(metrics, 'endpoints_requests_rejected_total{reason="unauthorized"}') == 1.0
    # One JSON line per request in the process output.
    time.sleep(0.2)
    lines = [json.loads(line) for line in server.log.splitlines() if line.startswith('{"ts"')]
    scored = [line for line in lines if line["route"] == "/score"]
    assert [line["status"] for line in scored].count(200) == 20
    assert KEY not in server.log


def test_connection_refused_helper_is_real():
    """Guards the drain test's 'refused' branch: a bound, non-listening port refuses."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2) as c:
            c.get(f"http://127.0.0.1:{port}/")
