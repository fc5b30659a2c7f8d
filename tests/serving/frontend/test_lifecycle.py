"""Readiness, draining, /metrics, request ids and the JSON access log, over real sockets."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime

import httpx
from frontend_serve import PRIMARY


def test_ready_follows_is_ready_and_draining_while_liveness_stays_200(served, client):
    ready = {"ready": False}
    with served(ready=ready) as s:
        r = client.get(s.url + "/ready")
        assert (r.status_code, r.json()) == (503, {"error": "not ready"})
        assert client.get(s.url + "/").status_code == 200
        ready["ready"] = True
        r = client.get(s.url + "/ready")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        assert client.head(s.url + "/ready").status_code == 200
        r = client.post(s.url + "/ready")
        assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")
        assert r.json() == {"error": "method POST not allowed on /ready; use GET"}
        s.frontend.begin_drain()
        r = client.get(s.url + "/ready")
        assert (r.status_code, r.json()) == (503, {"error": "draining"})
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        r = client.post(s.url + "/score", json={}, headers={"traceparent": traceparent, "x-request-id": "d1"})
        assert (r.status_code, r.json()) == (503, {"error": "draining: the instance is shutting down; retry"})
        echoed = (r.headers["connection"], r.headers["x-request-id"], r.headers["traceparent"])
        assert echoed == ("close", "d1", traceparent)
        r = client.get(s.url + "/")
        assert (r.status_code, r.text) == (200, "Healthy")


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


def test_metrics_count_routes_statuses_rejections_and_gauges(served, client, keys_dir):
    async def overload(url: str):
        async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {PRIMARY}"}) as c:
            slow = asyncio.create_task(c.post(url + "/score", json={"sleep": 0.6}))
            await asyncio.sleep(0.2)
            during = await c.get(url + "/metrics")
            queued = [asyncio.create_task(c.post(url + "/score", json={})) for _ in range(3)]
            results = await asyncio.gather(slow, *queued)
            return during.text, [r.status_code for r in results]

    with served(
        auth_mode="key", keys_dir=keys_dir, max_concurrent_requests=1, max_queue_wait_ms=100, request_timeout_ms=2000
    ) as s:
        auth = {"Authorization": f"Bearer {PRIMARY}"}
        assert client.post(s.url + "/score", json={}, headers=auth).status_code == 200
        assert client.post(s.url + "/score", json={}).status_code == 401
        assert client.get(s.url + "/nope", headers=auth).status_code == 404
        assert client.post(s.url + "/score", json={"sleep": 3}, headers=auth).status_code == 408
        during, statuses = asyncio.run(overload(s.url))
        assert _metric(during, "endpoints_requests_in_flight") == 1.0
        assert sorted(statuses) == [200, 429, 429, 429]
        text = client.get(s.url + "/metrics").text
        assert text.startswith("# HELP")
        assert _metric(text, 'endpoints_requests_total{route="/score",status="200"}') == 2.0
        assert _metric(text, 'endpoints_requests_total{route="/score",status="401"}') == 1.0
        assert _metric(text, 'endpoints_requests_total{route="/score",status="408"}') == 1.0
        assert _metric(text, 'endpoints_requests_total{route="/score",status="429"}') == 3.0
        assert _metric(text, 'endpoints_requests_total{route="other",status="404"}') == 1.0
        assert _metric(text, 'endpoints_requests_rejected_total{reason="unauthorized"}') == 1.0
        assert _metric(text, 'endpoints_requests_rejected_total{reason="overloaded"}') == 3.0
        assert _metric(text, 'endpoints_requests_rejected_total{reason="timeout"}') == 1.0
        assert _metric(text, 'endpoints_request_duration_seconds_count{route="/score"}') == 7.0
        assert _metric(text, 'endpoints_request_duration_seconds_bucket{le="+Inf",route="/score"}') == 7.0
        assert _metric(text, "endpoints_run_duration_seconds_count") == 2.0  # the two that ran to completion
        assert _metric(text, "endpoints_requests_in_flight") == 0.0
        assert _metric(text, "endpoints_requests_queued") == 0.0
        r = client.get(s.url + "/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=")


def _access_lines(capsys, count: int) -> list[dict]:
    """The JSON access lines written so far (they are written right after the response: poll briefly)."""
    lines: list[dict] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        err = capsys.readouterr().err
        lines += [json.loads(line) for line in err.splitlines() if '"logger":"serving.access"' in line]
        if len(lines) >= count:
            break
        time.sleep(0.02)
    return lines


def test_one_json_access_line_per_request_without_credentials(served, client, keys_dir, capsys):
    with served(auth_mode="key", keys_dir=keys_dir) as s:
        capsys.readouterr()
        ok = client.post(
            s.url + "/score", json={}, headers={"Authorization": f"Bearer {PRIMARY}", "x-request-id": "req-123"}
        )
        bad = client.post(s.url + "/score", json={}, headers={"Authorization": "Bearer not-the-key"})
        lines = _access_lines(capsys, 2)
        assert ok.headers["x-request-id"] == "req-123"
        assert len(lines) == 2
        first, second = lines
        assert first["request_id"] == "req-123"
        assert (first["method"], first["route"], first["status"]) == ("POST", "/score", 200)
        assert first["duration_ms"] > 0
        assert "reason" not in first
        assert (second["status"], second["reason"]) == (401, "unauthorized")
        assert second["request_id"] == bad.headers["x-request-id"]
        assert list(first) == [
            *("time", "level", "logger", "endpoint", "deployment", "request_id", "trace_id", "message"),
            *("method", "route", "status", "duration_ms"),
        ]
        assert (first["level"], first["logger"], first["trace_id"], first["message"]) == (
            "info",
            "serving.access",
            None,
            "POST /score 200",
        )
        raw = json.dumps(lines)
        assert PRIMARY not in raw and "not-the-key" not in raw and "uthorization" not in raw


def test_generated_request_id_reaches_the_app_and_the_log(served, client, capsys):
    with served() as s:
        capsys.readouterr()
        r = client.post(s.url + "/score", json={})
        rid = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f-]{36}", rid)
        lines = _access_lines(capsys, 1)
        assert [line["request_id"] for line in lines] == [rid]
        # An over-long id is not trusted for our own answers.
        r = client.get(s.url + "/ready", headers={"x-request-id": "x" * 101})
        assert r.status_code == 200
        assert re.fullmatch(r"[0-9a-f-]{36}", r.headers["x-request-id"])


def test_access_line_escapes_client_ids_and_times_the_request(served, client, capsys):
    with served() as s:
        capsys.readouterr()
        odd = 'a"b\\c\u00e9'  # a quote, a backslash and a non-ASCII character: JSON must escape or keep them
        before = time.time()
        r = client.post(s.url + "/score", json={"sleep": 0.25}, headers={"x-request-id": odd.encode("latin-1")})
        after = time.time()
        assert r.status_code == 200
        (line,) = _access_lines(capsys, 1)
        assert line["request_id"] == odd
        at = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        assert int(before * 1000) / 1000 <= at <= after
        # duration_ms has microsecond resolution and covers the 250 ms the app slept.
        assert 250 <= line["duration_ms"] < (after - before) * 1000 + 1


def test_access_lines_are_batched_and_flushed_by_the_ticker_the_batch_size_and_flush_log(capsys):
    """Lines wait for the ticker (one write per TICK_S, not per request), are forced out at LOG_BATCH_LINES, and
    flush_log() (called by the server when it stops) writes what is left."""
    from frontend_toy_app import create_toy_app

    from serving.frontend import FrontendSettings, build_frontend
    from serving.frontend.app import LOG_BATCH_LINES, TICK_S

    frontend = build_frontend(create_toy_app(), FrontendSettings(), lambda: True)
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    def written() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if '"logger":"serving.access"' in line]

    async def scenario() -> None:
        capsys.readouterr()
        for _ in range(3):
            await frontend(dict(scope), receive, send)
        assert written() == []  # held for the ticker
        await asyncio.sleep(TICK_S * 3)
        assert len(written()) == 3
        for _ in range(LOG_BATCH_LINES - 1):
            await frontend(dict(scope), receive, send)
        assert written() == []
        await frontend(dict(scope), receive, send)  # the batch is full: written at once
        assert len(written()) == LOG_BATCH_LINES
        await frontend(dict(scope), receive, send)
        frontend.flush_log()
        assert len(written()) == 1
        await frontend(dict(scope), receive, send)  # left waiting when this loop ends

    async def next_loop() -> None:
        # A new loop whose only request is answered by the layer itself (POST /ready: 405; a 200 from /ready, a
        # readiness poll, is not logged at info): its ticker must start and write both that line and the one the old
        # loop left.
        await frontend({**scope, "method": "POST", "path": "/ready", "raw_path": b"/ready"}, receive, send)
        await asyncio.sleep(TICK_S * 3)
        assert [json.loads(line)["route"] for line in written()] == ["/", "/ready"]

    asyncio.run(scenario())
    asyncio.run(next_loop())
    assert sum(1 for m in sent if m["type"] == "http.response.start" and m["status"] == 200) == LOG_BATCH_LINES + 5
