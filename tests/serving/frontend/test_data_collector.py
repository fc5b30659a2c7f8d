"""Payload logging (Azure's data_collector) in the real serving process: JSON lines per request, sampled by a hash
of the request id, rolled per period, dropped (and counted) when the queue is full, never holding a credential."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import fsspec
import httpx
import pytest
from serving_process import ServingProcess

from contract.serving import DataCollectorSettings, FrontendSettingsError
from serving.frontend.collector import DataCollector

KEY = "s3cr3t-" + "k" * 33


def Server(tmp_path: Path, env: dict[str, str], workers: int = 1) -> ServingProcess:
    """The echo script's serving process as endpoint shop, deployment blue (30 s to drain and flush on stop)."""
    env = {"ENDPOINTS_ENDPOINT_NAME": "shop", "ENDPOINTS_DEPLOYMENT_NAME": "blue", **env}
    return ServingProcess(tmp_path / "server.log", "echo_score.py", workers, env, stop_timeout_s=30)


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def factory(workers: int = 1, **env: str) -> Server:
        server = Server(tmp_path, env, workers)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def _lines(root: Path) -> dict[str, list[dict]]:
    """Every line under ``root``, by file path relative to it."""
    return {
        str(p.relative_to(root)): [json.loads(x) for x in p.read_text().splitlines()]
        for p in sorted(root.rglob("*.jsonl"))
    }


def _by_collection(root: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for path, lines in _lines(root).items():
        out.setdefault(path.split("/")[0], []).extend(lines)
    return out


def test_every_request_gives_one_input_and_one_output_line_with_the_exact_payloads(start, tmp_path):
    store = tmp_path / "collected"
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primary").write_text(KEY)
    (keys / "secondary").write_text("x" * 40)
    server = start(
        ENDPOINTS_AUTH_MODE="key",
        ENDPOINTS_KEYS_DIR=str(keys),
        ENDPOINTS_DATA_COLLECTOR_PATH=str(store),
        ENDPOINTS_DATA_COLLECTOR_COLLECTIONS="model_inputs,model_outputs",
        ENDPOINTS_DATA_COLLECTOR_CAPTURE_HEADERS="x-client-tag",
    )
    sent, answers = {}, {}
    trace = "0af7651916cd43dd8448eb211c80319c"
    with httpx.Client(timeout=10) as c:
        for i in range(12):
            payload = {"data": [[i, i + 0.5]], "note": f"ünïcode {i}"}
            headers = {
                "authorization": f"Bearer {KEY}",
                "x-request-id": f"req-{i}",
                "x-client-tag": f"t{i}",
                "cookie": f"session={KEY}",
                "x-ms-client-request-id": f"client-{i}",
                "traceparent": f"00-{trace}-b7ad6b7169203331-01",
            }
            r = c.post(server.url + "/score", json=payload, headers=headers)
            assert r.status_code == 200, r.text
            sent[f"req-{i}"], answers[f"req-{i}"] = payload, r.json()
        # Not scored by the app: no lines.
        assert c.post(server.url + "/score", json={"x": 1}, headers={"x-request-id": "no-key"}).status_code == 401
    server.stop()

    collections = _by_collection(store)
    assert sorted(collections) == ["model_inputs", "model_outputs"]
    inputs, outputs = collections["model_inputs"], collections["model_outputs"]
    assert {line["correlationid"]: line["data"] for line in inputs} == sent
    assert {line["correlationid"]: (line["data"], line["status"]) for line in outputs} == {
        rid: (answer, 200) for rid, answer in answers.items()
    }
    assert len(inputs) == len(outputs) == 12
    first = next(line for line in inputs if line["correlationid"] == "req-3")
    assert {k: v for k, v in first.items() if k not in ("id", "time")} == {
        "specversion": "1.0",
        "source": "/endpoints/shop/deployments/blue",
        "type": "azureml.inference.model_inputs",
        "datacontenttype": "application/json",
        "data": sent["req-3"],
        "correlationid": "req-3",
        "xrequestid": "req-3",
        "endpoint": "shop",
        "deployment": "blue",
        "method": "POST",
        "path": "/score",
        "clientrequestid": "client-3",
        "traceid": trace,
        "headers": {"x-client-tag": "t3"},
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    # Credentials were sent with every request (authorization, a cookie): never written.
    text = "".join(p.read_text() for p in store.rglob("*.jsonl"))
    assert KEY not in text and "authorization" not in text.lower() and "cookie" not in text.lower()


def test_each_worker_process_writes_its_own_file(start, tmp_path):
    store = tmp_path / "collected"
    server = start(workers=2, ENDPOINTS_DATA_COLLECTOR_PATH=str(store), ENDPOINTS_DATA_COLLECTOR_COLLECTIONS="request")
    with httpx.Client(timeout=10) as c:
        for i in range(20):
            # A new connection per request: the kernel spreads them over both workers (SO_REUSEPORT).
            r = c.post(server.url + "/score", json=i, headers={"x-request-id": f"w-{i}", "connection": "close"})
            assert r.status_code == 200
    server.stop()
    lines = _lines(store)
    assert sorted(x["correlationid"] for items in lines.values() for x in items) == sorted(f"w-{i}" for i in range(20))
    pids = {path.rsplit("-", 1)[1].removesuffix(".jsonl") for path in lines}
    assert str(server.proc.pid) not in pids and 1 <= len(pids) <= 2  # the workers', never the master's


def _sampled(request_id: str, rate: float) -> bool:
    """The documented rule (serving.frontend.collector), written out independently."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < int(rate * 2**64)


def test_sampling_keeps_the_requests_whose_id_hashes_below_the_rate(start, tmp_path):
    store = tmp_path / "collected"
    server = start(
        ENDPOINTS_DATA_COLLECTOR_PATH=str(store),
        ENDPOINTS_DATA_COLLECTOR_COLLECTIONS="request",
        ENDPOINTS_DATA_COLLECTOR_SAMPLING_RATE="0.5",
    )
    n = 200
    with httpx.Client(timeout=10) as c:
        for i in range(n):
            assert c.post(server.url + "/score", json=i, headers={"x-request-id": f"s-{i}"}).status_code == 200
    server.stop()
    got = {line["correlationid"] for line in _by_collection(store)["request"]}
    expected = {f"s-{i}" for i in range(n) if _sampled(f"s-{i}", 0.5)}
    assert got == expected
    # The hash spreads these ids like fair coins: within 3 standard deviations of n/2 (binomial, p = 0.5).
    assert abs(len(got) - n / 2) <= 3 * math.sqrt(n * 0.25), len(got)


@pytest.mark.parametrize(
    ("rate", "step_ms", "files"),
    [
        pytest.param(
            "minute", 20_000, {"2026/01/01/10/58": 2, "2026/01/01/10/59": 3, "2026/01/01/11/00": 1}, id="minute"
        ),
        pytest.param("hour", 1_200_000, {"2026/01/01/10": 1, "2026/01/01/11": 3, "2026/01/01/12": 2}, id="hour"),
        pytest.param("day", 3_600_000, {"2026/01/01": 6}, id="day"),
    ],
)
def test_lines_roll_into_one_folder_per_period(start, tmp_path, rate, step_ms, files):
    store = tmp_path / "collected"
    server = start(
        ENDPOINTS_DATA_COLLECTOR_PATH=str(store),
        ENDPOINTS_DATA_COLLECTOR_COLLECTIONS="response",
        ENDPOINTS_DATA_COLLECTOR_ROLLING_RATE=rate,
        # The collector's clock, not the wall clock: request i is stamped 10:58:30 + i * step.
        ENDPOINTS_DATA_COLLECTOR_CLOCK_START="2026-01-01T10:58:30+00:00",
        ENDPOINTS_DATA_COLLECTOR_CLOCK_STEP_MS=str(step_ms),
    )
    with httpx.Client(timeout=10) as c:
        for i in range(6):
            assert c.post(server.url + "/score", json=i, headers={"x-request-id": f"roll-{i}"}).status_code == 200
    server.stop()
    lines = _lines(store)
    pid = server.proc.pid
    counts = {}
    for path, items in lines.items():
        collection, _, rest = path.partition("/")
        folder, _, name = rest.rpartition("/")
        assert (collection, name.removesuffix(".jsonl").rsplit("-", 1)[1]) == ("response", str(pid)), path
        counts[folder] = len(items)
    assert counts == files
    ordered = sorted((line["time"], line["correlationid"]) for items in lines.values() for line in items)
    assert ordered[0] == ("2026-01-01T10:58:30.000Z", "roll-0")


def test_a_full_queue_drops_and_counts_and_the_requests_are_unaffected(start, tmp_path):
    store = tmp_path / "collected"
    # 100 bytes of queue: a small request and its answer fit, a large one never does.
    server = start(
        ENDPOINTS_DATA_COLLECTOR_PATH=str(store),
        ENDPOINTS_DATA_COLLECTOR_COLLECTIONS="model_inputs,model_outputs",
        ENDPOINTS_DATA_COLLECTOR_QUEUE_BYTES="100",
    )
    big = {"blob": "x" * 200}
    with httpx.Client(timeout=10) as c:
        for i in range(10):
            small = c.post(server.url + "/score", json=i, headers={"x-request-id": f"small-{i}"})
            large = c.post(server.url + "/score", json=big, headers={"x-request-id": f"large-{i}"})
            assert (small.status_code, small.json(), large.status_code, large.json()) == (
                200,
                {"echo": i},
                200,
                {"echo": big},
            )
        metrics = c.get(server.url + "/metrics").text
    server.stop()
    assert 'endpoints_data_collector_dropped_total{reason="queue_full"} 10.0' in metrics
    ids = {line["correlationid"] for line in _by_collection(store)["model_inputs"]}
    assert ids == {f"small-{i}" for i in range(10)}


def test_bad_settings_name_the_variable_and_the_value():
    def error(**env: str) -> str:
        with pytest.raises(FrontendSettingsError) as info:
            DataCollectorSettings.from_env(
                {"ENDPOINTS_DATA_COLLECTOR_PATH": "/tmp/x", "ENDPOINTS_DATA_COLLECTOR_COLLECTIONS": "request", **env}
            )
        return str(info.value)

    assert error(ENDPOINTS_DATA_COLLECTOR_SAMPLING_RATE="1.5") == (
        "ENDPOINTS_DATA_COLLECTOR_SAMPLING_RATE='1.5': Input should be less than or equal to 1"
    )
    assert error(ENDPOINTS_DATA_COLLECTOR_ROLLING_RATE="week") == (
        "ENDPOINTS_DATA_COLLECTOR_ROLLING_RATE='week': Input should be 'minute', 'hour', 'day', 'month' or 'year'"
    )
    assert error(ENDPOINTS_DATA_COLLECTOR_COLLECTIONS="inputs") == (
        "ENDPOINTS_DATA_COLLECTOR_COLLECTIONS: got 'inputs'; use model_inputs, request, model_outputs, response"
    )
    assert error(ENDPOINTS_DATA_COLLECTOR_CAPTURE_HEADERS="x-a,Authorization") == (
        "ENDPOINTS_DATA_COLLECTOR_CAPTURE_HEADERS: got 'authorization'; credentials are never collected"
    )
    assert DataCollectorSettings.from_env({"ENDPOINTS_DATA_COLLECTOR_COLLECTIONS": "request"}) is None


def test_an_object_store_gets_one_new_object_per_batch():
    """fsspec stores without append (here fsspec's in-memory store) get whole objects, never rewritten."""
    settings = DataCollectorSettings(
        data_collector_path="memory://collector-test",
        data_collector_collections="request,response",
        data_collector_clock_start="2026-03-04T05:06:07+00:00",
    )
    collector = DataCollector(settings, "shop", "blue")
    for i in range(3):
        collector.submit(
            f"m-{i}",
            "POST",
            "/score",
            [(b"content-type", b"application/json")],
            b'{"a": %d}' % i,
            [b'{"b":', b" %d}" % i],
            [(b"content-type", b"application/json")],
            200,
            None,
        )
    collector.close()
    fs = fsspec.filesystem("memory")
    try:
        paths = sorted(fs.find("/collector-test"))
        assert paths and all(
            re.fullmatch(r"/collector-test/(request|response)/2026/03/04/05/.+-\d{6}\.jsonl", p) for p in paths
        ), paths
        lines = [json.loads(x) for p in paths for x in fs.cat(p).splitlines()]
        assert sorted((x["type"], x["correlationid"], json.dumps(x["data"])) for x in lines) == sorted(
            [("azureml.inference.request", f"m-{i}", json.dumps({"a": i})) for i in range(3)]
            + [("azureml.inference.response", f"m-{i}", json.dumps({"b": i})) for i in range(3)]
        )
    finally:
        fs.rm("/collector-test", recursive=True)
