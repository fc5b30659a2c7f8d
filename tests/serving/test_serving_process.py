"""The serving process over real sockets: exit codes, readiness, workers, TCP_NODELAY, SIGTERM drain."""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serving_helpers import REPO, SCRIPTS, connect_refused

pytestmark = pytest.mark.slow


def wait_in_flight(url: str, count: int, timeout_s: float = 10) -> None:
    """Poll /metrics until ``count`` scoring requests hold an admission slot (they are inside run())."""
    expected = f"endpoints_requests_in_flight {float(count)}"
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5) as client:
        while expected not in (text := client.get("/metrics").text):
            assert time.monotonic() < deadline, f"{expected!r} not in /metrics after {timeout_s} s:\n{text}"
            time.sleep(0.05)


def script_args(name: str, *extra: str) -> list[str]:
    return ["--entry-script", str(SCRIPTS / name), *extra]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_init_failure_exits_3_and_logs_the_cause(server, workers: str) -> None:
    process = server(script_args("init_fails_score.py", "--workers", workers))
    assert process.wait(timeout=60) == 3
    log = process.log
    assert "init() failed: RuntimeError: model file model.pkl is missing" in log
    assert "exiting with status 3" in log


def test_missing_run_exits_3(server) -> None:
    process = server(script_args("no_run_score.py"))
    assert process.wait(timeout=60) == 3
    assert f"entry script {SCRIPTS / 'no_run_score.py'}: no run() function defined" in process.log


def test_missing_script_exits_3(server) -> None:
    process = server(script_args("does_not_exist.py"))
    assert process.wait(timeout=60) == 3
    assert "does_not_exist.py: no such file" in process.log


def test_live_during_init_ready_after(server, tmp_path) -> None:
    gate = tmp_path / "init-may-finish"
    process = server(script_args("slow_score.py"), {"INIT_GATE": str(gate)})
    process.wait_listening()
    with httpx.Client(base_url=process.url, timeout=5) as client:
        deadline = time.monotonic() + 10
        while True:  # the socket is open before uvicorn accepts: retry briefly
            try:
                live = client.get("/")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert (live.status_code, live.text) == (200, "Healthy")
        not_ready = client.get("/ready")
        assert not_ready.status_code == 503
        early = client.post("/score", content=b"0")
        assert early.status_code == 503
        assert early.json() == {"error": "the scoring script is still initialising"}
    gate.touch()
    process.wait_ready()
    with httpx.Client(base_url=process.url, timeout=5) as client:
        assert client.get("/ready").status_code == 200
        response = client.post("/score", content=b"0")
        assert response.status_code == 200
        assert response.json()["slept"] == 0.0


def test_two_workers_share_the_port(server) -> None:
    process = server(script_args("slow_score.py", "--workers", "2"))
    process.wait_ready()
    pids = set()
    for _ in range(40):  # a new connection each time: SO_REUSEPORT spreads them over both workers
        with httpx.Client(base_url=process.url, timeout=5) as client:
            response = client.post("/score", content=b"0")
            assert response.status_code == 200
            pids.add(response.json()["pid"])
        if len(pids) == 2:
            break
    assert len(pids) == 2
    assert process.proc.pid not in pids  # the master only supervises
    process.terminate()
    assert process.wait(timeout=20) == 0


def test_tcp_nodelay_no_delayed_ack_stalls(server) -> None:
    """Responses are written as headers then body; with Nagle on each would wait ~40 ms for the delayed ACK."""
    process = server(script_args("text_score.py"))
    process.wait_ready()
    connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=5)
    try:
        durations = []
        for _ in range(40):
            start = time.perf_counter()
            connection.request("POST", "/score", body=b'{"data": [1]}')
            response = connection.getresponse()
            assert response.status == 200
            assert response.read() == b'{"result":[2]}'
            durations.append(time.perf_counter() - start)
    finally:
        connection.close()
    assert statistics.median(durations) < 0.02, durations


def test_sigterm_drains_in_flight_requests(server) -> None:
    env = {"ENDPOINTS_MAX_CONCURRENT_REQUESTS": "8", "ENDPOINTS_REQUEST_TIMEOUT_MS": "20000"}
    process = server(script_args("slow_score.py"), env)
    process.wait_ready()
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=process.url, timeout=20) as client:
            response = client.post("/score", content=b"1.5")
            with lock:
                results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    wait_in_flight(process.url, 5)  # all five are running run()
    with httpx.Client(base_url=process.url, timeout=5) as client:
        assert client.get("/ready").status_code == 200
    started = time.monotonic()
    process.terminate()
    deadline = time.monotonic() + 3
    while not connect_refused(process.port):  # the listener closes right after the signal
        assert time.monotonic() < deadline, "still accepting connections 3 s after SIGTERM"
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=20)
    assert process.wait(timeout=20) == 0
    assert time.monotonic() - started < 5
    assert sorted(status for status, _ in results) == [200] * 5
    assert all(body["slept"] == 1.5 for _, body in results)


def test_drain_is_bounded_by_the_timeout(server) -> None:
    env = {"ENDPOINTS_DRAIN_TIMEOUT_S": "1", "ENDPOINTS_REQUEST_TIMEOUT_MS": "60000"}
    process = server(script_args("slow_score.py"), env)
    process.wait_ready()

    outcome: list[object] = []

    def call() -> None:
        with httpx.Client(base_url=process.url, timeout=30) as client:
            try:
                response = client.post("/score", content=b"20")
                outcome.append((response.status_code, response.text))
            except httpx.TransportError as ex:
                outcome.append(type(ex).__name__)

    thread = threading.Thread(target=call)
    thread.start()
    wait_in_flight(process.url, 1)
    started = time.monotonic()
    process.terminate()
    code = process.wait(timeout=15)
    elapsed = time.monotonic() - started
    thread.join(timeout=10)
    assert code == 0
    assert elapsed < 4, elapsed
    assert outcome == [(503, '{"error":"the instance shut down before the request finished; retry"}')]


def test_endpoints_serve_rejects_missing_script(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", "serve", "--entry-script", str(tmp_path / "nope.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        env={**os.environ, "COLUMNS": "1000", "NO_COLOR": "1"},
        check=False,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'nope.py'}: no such file" in result.stderr


def test_ready_state_needs_every_worker_and_no_drain() -> None:
    from serving.server.readiness import ReadyState

    state = ReadyState(2)
    assert not state.is_ready()
    state.set_ready(0, True)
    assert not state.is_ready()
    state.set_ready(1, True)
    assert state.is_ready()
    state.start_draining()
    assert state.draining
    assert not state.is_ready()


def test_metrics_sum_over_workers(server) -> None:
    process = server(script_args("text_score.py", "--workers", "2"))
    process.wait_ready()
    for _ in range(10):  # new connections: both workers answer some
        with httpx.Client(base_url=process.url, timeout=5) as client:
            assert client.post("/score", content=b"1").status_code == 200
    expected = 'endpoints_requests_total{route="/score",status="200"} 10.0'
    deadline = time.monotonic() + 5  # each worker flushes its counts to the shared folder about once a second
    with httpx.Client(base_url=process.url, timeout=5) as client:
        while expected not in (text := client.get("/metrics").text):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)


def test_sigterm_during_a_long_init_exits_promptly(server) -> None:
    process = server(script_args("slow_score.py"), {"SLOW_INIT_S": "60"})
    process.wait_listening()
    time.sleep(0.5)
    started = time.monotonic()
    process.terminate()
    assert process.wait(timeout=20) == 0
    assert time.monotonic() - started < 5
