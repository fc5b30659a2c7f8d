"""The production layer inside the real serving process (``python -m serving``): SIGTERM drain, several workers."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from otlp_receiver import OtlpReceiver
from serving_process import ServingProcess

KEY = "k" * 40


def Process(log_path: Path, workers: int, env: dict[str, str]) -> ServingProcess:
    """The sleep script's serving process (``SLEEP_S`` per request)."""
    return ServingProcess(log_path, "sleep_score.py", workers, env)


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[Process] = []

    def factory(workers: int = 1, **env: str) -> ServingProcess:
        process = Process(tmp_path / f"server-{len(started)}.log", workers, env)
        started.append(process)
        return process

    yield factory
    for process in started:
        process.stop()


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
    server = start(
        workers=2, ENDPOINTS_AUTH_MODE="key", ENDPOINTS_KEYS_DIR=str(keys), ENDPOINTS_MAX_CONCURRENT_REQUESTS="4"
    )
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
    lines = [json.loads(line) for line in server.log.splitlines() if '"logger":"serving.access"' in line]
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


def test_answers_of_the_layer_itself_carry_the_request_id_and_traceparent(start, tmp_path):
    """401, 413, 429 and 408 are answered by the production layer, not the script: each still echoes the request's
    x-request-id and traceparent (as a scored answer does), and its access-log line names the trace."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primary").write_text(KEY)
    (keys / "secondary").write_text("s" * 40)
    server = start(
        ENDPOINTS_AUTH_MODE="key",
        ENDPOINTS_KEYS_DIR=str(keys),
        ENDPOINTS_MAX_BODY_BYTES="100",
        ENDPOINTS_REQUEST_TIMEOUT_MS="2000",
        ENDPOINTS_MAX_QUEUE_WAIT_MS="60000",
    )
    auth = {"authorization": f"Bearer {KEY}"}

    def traced(i: int) -> dict[str, str]:
        return {"x-request-id": f"req-{i}", "traceparent": f"00-{i:032x}-{i:016x}-01"}

    def echoed(r: httpx.Response) -> tuple[int, str, str, str]:
        return r.status_code, r.headers["x-request-id"], r.headers["x-ms-request-id"], r.headers["traceparent"]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as c:
            scored = await c.post(server.url + "/score", content=b"0", headers={**auth, **traced(1)})
            unauthorized = await c.post(server.url + "/score", content=b"0", headers=traced(2))
            too_large = await c.post(server.url + "/score", content=b"0" * 101, headers={**auth, **traced(3)})
            # One request runs (max_concurrent_requests 1), one waits: the next one is turned away at once (429);
            # the two then pass their 2 s deadline (408).
            running = asyncio.create_task(c.post(server.url + "/score", content=b"5", headers={**auth, **traced(4)}))
            queued = asyncio.create_task(c.post(server.url + "/score", content=b"5", headers={**auth, **traced(5)}))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                metrics = (await c.get(server.url + "/metrics")).text
                gauges = [_gauge(metrics, f"endpoints_requests_{name}") for name in ("in_flight", "queued")]
                if gauges == [1, 1]:
                    break
                await asyncio.sleep(0.05)
            overloaded = await c.post(server.url + "/score", content=b"0", headers={**auth, **traced(6)})
            return [scored, unauthorized, too_large, overloaded, await running, await queued]

    responses = asyncio.run(main())
    assert [echoed(r) for r in responses] == [
        (status, f"req-{i}", f"req-{i}", f"00-{i:032x}-{i:016x}-01")
        for status, i in ((200, 1), (401, 2), (413, 3), (429, 6), (408, 4), (408, 5))
    ]
    # Without a valid traceparent there is none to echo (a malformed one is not passed on).
    with httpx.Client(timeout=10) as c:
        r = c.post(server.url + "/score", content=b"0", headers={"traceparent": "00-zz", "x-request-id": "req-7"})
    assert (r.status_code, r.headers["x-request-id"], "traceparent" in r.headers) == (401, "req-7", False)
    deadline = time.monotonic() + 5
    while '"request_id":"req-7"' not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(x) for x in server.log.splitlines() if '"logger":"serving.access"' in x]
    traces = {line["request_id"]: (line["status"], line["trace_id"]) for line in lines if line["route"] == "/score"}
    assert traces == {
        f"req-{i}": (status, f"{i:032x}") for status, i in ((200, 1), (401, 2), (413, 3), (429, 6), (408, 4), (408, 5))
    } | {"req-7": (401, None)}


def test_spans_are_exported_with_otlp_when_an_endpoint_is_set(start):
    receiver = OtlpReceiver()
    try:
        server = start(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_BSP_SCHEDULE_DELAY="50",
            ENDPOINTS_ENDPOINT_NAME="shop",
            ENDPOINTS_DEPLOYMENT_NAME="blue",
        )
        trace, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        with httpx.Client(timeout=10) as c:
            r = c.post(
                server.url + "/score",
                content=b"0",
                headers={"traceparent": f"00-{trace}-{parent}-01", "x-request-id": "o1"},
            )
            assert r.status_code == 200
            assert c.get(server.url + "/nowhere", headers={"x-request-id": "o2"}).status_code == 404
        deadline = time.monotonic() + 20
        while len(receiver.spans) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        receiver.close()

    def attributes(span) -> dict:
        return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}

    got = [(res, s.name, s.trace_id.hex(), s.parent_span_id.hex(), attributes(s)) for res, s in receiver.spans]
    # Two spans: the readiness polls before them (GET /ready) are not traced.
    assert [(r["service.name"], r["service.instance.id"]) for r, *_ in got] == [("shop", "blue")] * 2
    assert [rest for _, *rest in got] == [
        [
            "POST /score",
            trace,
            parent,
            {
                "http.request.method": "POST",
                "http.route": "/score",
                "http.response.status_code": 200,
                "endpoints.request_id": "o1",
            },
        ],
        [
            "GET other",
            got[1][2],
            "",
            {
                "http.request.method": "GET",
                "http.route": "other",
                "http.response.status_code": 404,
                "endpoints.request_id": "o2",
            },
        ],
    ]
    assert got[1][2] != trace
