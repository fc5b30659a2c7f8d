"""The auth sidecar of custom containers (serving.auth_proxy), run for real: a standard-library HTTP server as the
custom container and the proxy as a process, over loopback sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SCRIPTS = Path(__file__).parent / "scripts"
KEY = "primary-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait(url: str, status: int, log: Path, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == status:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}:\n{log.read_text()[-3000:]}")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "primary").write_text(KEY)
    (folder / "secondary").write_text("secondary-key-9876543210")
    return folder


def test_proxy_authenticates_then_forwards_to_the_container(tmp_path: Path, keys: Path) -> None:
    upstream_port, port = _free_port(), _free_port()
    env = {"ENDPOINTS_AUTH_MODE": "key", "ENDPOINTS_KEYS_DIR": str(keys), "ENDPOINTS_REQUEST_TIMEOUT_MS": "5000"}
    proxy_log = tmp_path / "proxy.log"
    proxy_args = [
        sys.executable,
        "-m",
        "serving.auth_proxy",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--upstream-port",
        str(upstream_port),
        "--readiness-path",
        "/healthy",
    ]
    base = f"http://127.0.0.1:{port}"
    with _process(proxy_args, env, proxy_log) as proxy:
        _wait(f"{base}/", 200, proxy_log)  # the proxy is alive before the container is
        assert httpx.get(f"{base}/ready").status_code == 503
        upstream_log = tmp_path / "upstream.log"
        with _process([sys.executable, str(SCRIPTS / "byoc_server.py"), str(upstream_port)], {}, upstream_log):
            _wait(f"{base}/ready", 200, proxy_log)
            with httpx.Client(base_url=base, timeout=10) as client:
                r = client.post("/predict?v=2", json={"data": [1, 2, 3]}, headers={"Authorization": f"Bearer {KEY}"})
                # Forwarded with path and query; the endpoint's credential is not passed on to the container.
                assert (r.status_code, r.json()) == (200, {"sum": 6, "authorization": None, "query": "v=2"})
                assert r.headers["x-request-id"] == r.headers["x-ms-request-id"] != ""
                r = client.post(
                    "/predict", json={"data": [2]}, headers={"Authorization": f"Bearer {KEY}", "x-request-id": "rid-7"}
                )
                assert (r.status_code, r.headers["x-request-id"], r.json()["sum"]) == (200, "rid-7", 2)
                r = client.post("/predict", json={"data": [1]})
                assert (r.status_code, r.json()) == (401, {"error": "missing or invalid credentials"})
                r = client.post("/predict", json={"data": [1]}, headers={"Authorization": "Bearer wrong"})
                assert (r.status_code, r.json()) == (401, {"error": "missing or invalid credentials"})
                r = client.get("/nothing-here", headers={"Authorization": f"Bearer {KEY}"})
                assert (r.status_code, r.json()) == (404, {"error": "not found"})
        with httpx.Client(base_url=base, timeout=10) as client:
            r = client.post("/predict", json={"data": [1]}, headers={"Authorization": f"Bearer {KEY}"})
            assert (r.status_code, r.json()) == (502, {"error": "custom container unavailable"})
            _wait(f"{base}/ready", 503, proxy_log)
        proxy.terminate()
        assert proxy.wait(timeout=30) == 0, proxy_log.read_text()[-3000:]


def test_proxy_refuses_to_start_without_its_keys(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "serving.auth_proxy", "--upstream-port", "8000"],
        env={**os.environ, "ENDPOINTS_AUTH_MODE": "key"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "error: ENDPOINTS_AUTH_MODE=key needs ENDPOINTS_KEYS_DIR to be set",
    )
