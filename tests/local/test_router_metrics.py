"""The router process's Prometheus /metrics (its own port): exact counts after real requests over loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from local_helpers import REPO, free_port, router_config
from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = shutil.which("promtool")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _family(samples: dict, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def _scrape(port: int) -> str:
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4"), r
    return r.text


def _scrape_until(port: int, done, timeout: float = 20.0) -> tuple[str, dict]:
    """Scrape until ``done(samples)`` (counts made after the answer went out, or by background copies, land a moment
    later); the last scrape is returned either way, so a wrong count fails on the exact comparison that follows."""
    deadline = time.monotonic() + timeout
    while True:
        text = _scrape(port)
        samples = _samples(text)
        if done(samples) or time.monotonic() > deadline:
            return text, samples
        time.sleep(0.05)


def _requests(samples: dict) -> dict[tuple[str, str, str], float]:
    """endpoints_router_requests_total as (deployment, status, routed_by) -> count."""
    out = {}
    for labels, value in _family(samples, "endpoints_router_requests_total").items():
        d = dict(labels)
        out[(d["deployment"], d["status"], d["routed_by"])] = value
    return out


def _mirror(samples: dict) -> dict[str, dict]:
    sent = {
        dict(k)["deployment"] + "/" + dict(k)["outcome"]: v
        for k, v in _family(samples, "endpoints_router_mirror_requests_total").items()
    }
    failed = {dict(k)["deployment"]: v for k, v in _family(samples, "endpoints_router_mirror_failed_total").items()}
    return {"requests": sent, "failed": failed, "in_flight": samples[("endpoints_router_mirror_in_flight", ())]}


def _promtool_ok(text: str) -> None:
    if PROMTOOL is None:
        pytest.fail("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_requests_by_deployment_status_and_how_they_were_routed(upstreams, start_router, client):
    metrics_port = free_port()
    config = router_config(upstreams, {"alice": 90, "bob": 10}, max_body_bytes=100)
    router = start_router(config, ("--metrics-port", str(metrics_port)))
    assert _requests(_samples(_scrape(metrics_port))) == {}  # nothing yet (the scrape itself is not a request)

    # One round of the split (the deck holds exactly 90 + 10 cards per 100 requests), then pins.
    for _ in range(100):
        assert client.post(router.url + "/score", json={"x": 1}).status_code == 200
    for _ in range(5):
        r = client.post(router.url + "/score", json={"x": 1}, headers={"azureml-model-deployment": "carol"})
        assert r.status_code == 200
    for _ in range(2):
        r = client.post(router.url + "/score", json={}, headers={"azureml-model-deployment": "dave"})
        assert r.status_code == 404
    big = client.post(router.url + "/score", content=b"x" * 101, headers={"azureml-model-deployment": "alice"})
    assert big.status_code == 413
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert raw.recv(65536).startswith(b"HTTP/1.1 400 Bad Request\r\n")

    expected = {
        ("alice", "200", "weight"): 90.0,
        ("bob", "200", "weight"): 10.0,
        ("carol", "200", "pin"): 5.0,
        ("", "404", "pin"): 2.0,  # an unknown pin is not a label value: clients cannot grow the series count
        ("alice", "413", "pin"): 1.0,
        ("", "400", "none"): 1.0,
    }
    text, samples = _scrape_until(metrics_port, lambda s: sum(_requests(s).values()) >= sum(expected.values()))
    assert _requests(samples) == expected
    durations = _family(samples, "endpoints_router_request_duration_seconds_count")
    assert durations == {
        (("deployment", "alice"),): 91.0,
        (("deployment", "bob"),): 10.0,
        (("deployment", "carol"),): 5.0,
        (("deployment", ""),): 3.0,
    }
    inf = _family(samples, "endpoints_router_request_duration_seconds_bucket")
    assert inf[(("deployment", "alice"), ("le", "+Inf"))] == 91.0
    assert samples[("endpoints_router_request_duration_seconds_sum", (("deployment", "alice"),))] > 0
    assert _mirror(samples) == {"requests": {}, "failed": {}, "in_flight": 0.0}
    _promtool_ok(text)

    # The counts survive a reload (SIGHUP: new rules, same process).
    router.reload(router_config(upstreams, {"bob": 100}, max_body_bytes=100))
    for _ in range(3):
        assert client.post(router.url + "/score", json={}).headers["azureml-model-deployment"] == "bob"
    _, samples = _scrape_until(metrics_port, lambda s: _requests(s)[("bob", "200", "weight")] >= 13)
    assert _requests(samples) == {**expected, ("bob", "200", "weight"): 13.0}


def test_mirror_copies_sent_and_failed(upstreams, start_router, client):
    upstreams["bob"].stop()  # copies to bob find nobody: failed
    upstreams["carol"].mode = "error"  # copies to carol are answered 500: failed too
    metrics_port = free_port()
    router = start_router(router_config(upstreams, {"alice": 100}, {"bob": 10}), ("--metrics-port", str(metrics_port)))
    for _ in range(100):
        assert client.post(router.url + "/score", json={"x": 1}).headers["azureml-model-deployment"] == "alice"
    _, samples = _scrape_until(metrics_port, lambda s: _mirror(s)["failed"].get("bob", 0) >= 10)
    assert _mirror(samples) == {"requests": {"bob/sent": 10.0}, "failed": {"bob": 10.0}, "in_flight": 0.0}

    router.reload(router_config(upstreams, {"alice": 100}, {"carol": 50}))
    for _ in range(100):
        assert client.post(router.url + "/score", json={"x": 1}).status_code == 200
    text, samples = _scrape_until(metrics_port, lambda s: _mirror(s)["failed"].get("carol", 0) >= 50)
    assert _mirror(samples) == {
        "requests": {"bob/sent": 10.0, "carol/sent": 50.0},
        "failed": {"bob": 10.0, "carol": 50.0},
        "in_flight": 0.0,
    }
    assert len(upstreams["carol"].seen) == 50
    # Mirror copies are not client requests: only the 200 live answers are counted.
    assert _requests(samples) == {("alice", "200", "weight"): 200.0}
    _promtool_ok(text)


def test_mirror_copies_dropped_when_the_mirror_is_saturated(upstreams, start_router, client):
    # A mirror that accepts connections (the kernel's backlog) and never answers: every copy stays in flight until
    # its timeout (60 s, longer than this test), so after 32 (MIRROR_CONCURRENCY) copies the rest are dropped.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(128)
    try:
        config = router_config(upstreams, {"alice": 100}, {"bob": 100})
        config["upstreams"]["bob"] = f"http://127.0.0.1:{hung.getsockname()[1]}"
        config["timeouts_s"]["bob"] = 60.0
        metrics_port = free_port()
        router = start_router(config, ("--metrics-port", str(metrics_port)))
        for _ in range(40):
            assert client.post(router.url + "/score", json={"x": 1}).status_code == 200
        text, samples = _scrape_until(metrics_port, lambda s: sum(_mirror(s)["requests"].values()) >= 40)
        assert _mirror(samples) == {
            "requests": {"bob/sent": 32.0, "bob/dropped": 8.0},
            "failed": {},
            "in_flight": 32.0,
        }
        _promtool_ok(text)
    finally:
        hung.close()


def test_a_taken_metrics_port_fails_the_start_naming_it(upstreams, tmp_path):
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(router_config(upstreams, {"alice": 100})))
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        metrics_port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "endpoints.local.router",
                "--config",
                str(path),
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    [line] = [json.loads(x) for x in result.stderr.splitlines() if x.strip()]
    assert (line["level"], line["message"]) == (
        "error",
        f"cannot listen on 127.0.0.1:{metrics_port}: Address already in use",
    )
