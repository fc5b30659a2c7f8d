"""Every process's /metrics passes `promtool check metrics` (Debian's prometheus package)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from obs_helpers import local_cli, write_shop

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")


@pytest.fixture(autouse=True)
def _needs_promtool() -> None:
    """scripts/test.sh installs Debian's prometheus; missing, these tests fail rather than skip."""
    if PROMTOOL is None:
        pytest.fail("promtool is not installed (apt-get install prometheus)")


KEY = "k" * 40


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def test_promtool_finds_a_bad_name():
    """The checker itself: a counter without the _total suffix is reported (so a pass below means something)."""
    bad = "# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n"
    result = promtool(bad)
    assert result.returncode == 3, result
    assert 'counter metrics should have "_total" suffix' in result.stdout + result.stderr


def _wait(url: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(log.read_text())


def test_scoring_server_metrics_pass_promtool(tmp_path: Path):
    script = tmp_path / "score.py"
    script.write_text("def init():\n    pass\n\ndef run(raw):\n    return {'ok': True}\n")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--entry-script", str(script), "--port", "0", "--host", "127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "ENDPOINTS_ENDPOINT_NAME": "shop", "SERVICE_NAME": "shop", "SERVICE_VERSION": "blue"},
        )
        try:
            deadline = time.monotonic() + 60
            while not (match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            url = f"http://127.0.0.1:{match.group(1)}"
            _wait(f"{url}/ready", log, proc)
            for body in (b"{}", b"not json"):
                httpx.post(f"{url}/score", content=body, headers={"content-type": "application/json"})
            text = httpx.get(f"{url}/metrics").text
        finally:
            proc.terminate()
            proc.wait(30)
    assert 'endpoints_requests_total{route="/score",status="200"} 2.0\n' in text, text
    result = promtool(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_job_api_metrics_pass_promtool(tmp_path: Path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primary").write_text(KEY)
    (keys / "secondary").write_text("s" * 40)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "api.log"
    project = REPO / "tests" / "batch" / "fixtures" / "project"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "endpoints.local.batch_api",
                "--project",
                str(project),
                "--state-dir",
                str(tmp_path / "s"),
                "--port",
                str(port),
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ENDPOINTS_AUTH_MODE": "key", "ENDPOINTS_KEYS_DIR": str(keys)},
        )
        try:
            _wait(f"http://127.0.0.1:{port}/ready", log, proc)
            httpx.get(f"http://127.0.0.1:{port}/jobs", headers={"authorization": f"Bearer {KEY}"})
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        finally:
            proc.terminate()
            proc.wait(30)
    assert "endpoints_requests_total" in text
    result = promtool(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


SCORE = "def init():\n    pass\n\ndef run(raw):\n    return {'ok': True}\n"


def test_router_of_local_up_counts_requests_on_its_metrics_port(tmp_path: Path):
    """`endpoints local up` starts the router with a metrics port (in state.json); counts are exact, promtool passes."""
    root = write_shop(tmp_path / "shop", SCORE)
    cli = local_cli(tmp_path)

    up = cli("local", "up", str(root), "--port", "0", "--detach", "--json")
    assert up.returncode == 0, up.stderr
    try:
        router = json.loads(up.stdout)["router"]
        assert f"(metrics: http://127.0.0.1:{router['metrics_port']}/metrics)" in up.stderr
        key = json.loads(cli("get-credentials", "shop").stdout)["primaryKey"]
        url = f"http://127.0.0.1:{router['port']}"
        with httpx.Client(timeout=30) as client:
            auth = {"authorization": f"Bearer {key}"}
            for _ in range(3):
                assert client.post(f"{url}/score", json={}, headers=auth).status_code == 200
            pinned = client.post(f"{url}/score", json={}, headers={"azureml-model-deployment": "blue"})
            assert pinned.status_code == 401  # the deployment's answer, counted by the router as it went out
            # The endpoint's port stays a proxy: /metrics there is the deployment's, not the router's.
            assert "endpoints_router_requests_total" not in client.get(f"{url}/metrics").text
            # Counted as each answer went out (in the router's loop; scrapes are served by another thread): poll.
            deadline = time.monotonic() + 10
            while True:
                text = client.get(f"http://127.0.0.1:{router['metrics_port']}/metrics").text
                if 'duration_seconds_count{deployment="blue"} 5.0' in text or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    finally:
        cli("local", "down")
    # The deployment's /metrics answer through the endpoint's port was a request too (by weight, 200).
    assert 'endpoints_router_requests_total{deployment="blue",routed_by="weight",status="200"} 4.0\n' in text, text
    assert 'endpoints_router_requests_total{deployment="blue",routed_by="pin",status="401"} 1.0\n' in text, text
    assert 'endpoints_router_request_duration_seconds_count{deployment="blue"} 5.0\n' in text, text
    result = promtool(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
