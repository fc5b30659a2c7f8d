"""One JSON line format for every process: serving processes, the router, the job API and the batch runner."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from obs_helpers import local_cli, write_shop

from serving.logformat import FIELDS

REPO = Path(__file__).resolve().parents[2]
BATCH_FIXTURES = REPO / "tests" / "batch" / "fixtures"
KEY = "k" * 40

SCORE = 'import os\n\ndef init():\n    print("init done")\n\ndef run(raw):\n    return {"ok": True}\n'


def _records(text: str, source: str) -> list[dict]:
    """Every line of a process's output, parsed; each must be one JSON object with FIELDS first, in order."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{source}: not a JSON line: {line!r}") from None
        assert list(record)[: len(FIELDS)] == list(FIELDS), f"{source}: {line}"
        assert record["time"].endswith("Z") and record["time"][10] == "T", f"{source}: {line}"
        records.append(record)
    return records


def _wait_for(path: Path, needle: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{path}: no {needle!r} in:\n{text}")


def test_serving_processes_and_the_router(tmp_path: Path):
    root = write_shop(tmp_path / "shop", SCORE)
    cli = local_cli(tmp_path)

    up = cli("local", "up", str(root), "--port", "0", "--detach")
    assert up.returncode == 0, up.stderr
    try:
        state = json.loads((tmp_path / "state" / "shop" / "state.json").read_text())
        key = json.loads(cli("get-credentials", "shop").stdout)["primaryKey"]
        url = f"http://127.0.0.1:{state['router']['port']}"
        for i in range(3):
            r = httpx.post(f"{url}/score", json={}, headers={"authorization": f"Bearer {key}", "x-request-id": f"r{i}"})
            assert r.status_code == 200
        trace = "0af7651916cd43dd8448eb211c80319c"
        traced = httpx.post(
            f"{url}/score",
            json={},
            headers={
                "authorization": f"Bearer {key}",
                "x-request-id": "t1",
                "traceparent": f"00-{trace}-b7ad6b7169203331-01",
            },
        )
        assert traced.headers["traceparent"] == f"00-{trace}-b7ad6b7169203331-01"  # propagated router -> deployment
        bad = httpx.post(f"{url}/score", json={}, headers={"authorization": f"Bearer {key}", "traceparent": "00-zz"})
        assert "traceparent" not in bad.headers
        for _ in range(5):  # readiness polls and scrapes: counted in the metrics, not logged at info
            assert httpx.get(f"http://127.0.0.1:{state['deployments']['blue']['port']}/ready").status_code == 200
        os.kill(state["router"]["pid"], signal.SIGHUP)
        logs = tmp_path / "state" / "shop" / "logs"
        router = _records(_wait_for(logs / "router.log", "routing config reloaded"), "router.log")
        blue = _records(_wait_for(logs / "blue.log", '"request_id":"t1"'), "blue.log")
    finally:
        cli("local", "down")
    reload = [r for r in router if r["message"].startswith("routing config reloaded")]
    assert [(r["level"], r["logger"], r["endpoint"], r["deployment"]) for r in reload] == [
        ("info", "endpoints.local.router", "shop", None)
    ]
    loggers = {r["logger"] for r in blue}
    assert {"uvicorn.error", "serving.server", "serving.access", "user"} <= loggers, loggers
    assert {(r["endpoint"], r["deployment"]) for r in blue} == {("shop", "blue")}
    access = [r for r in blue if r["logger"] == "serving.access"]
    assert [(r["request_id"], r["trace_id"], r["message"]) for r in access[:4]] == [
        *((f"r{i}", None, "POST /score 200") for i in range(3)),
        ("t1", trace, "POST /score 200"),
    ]
    assert [r["message"] for r in blue if r["logger"] == "user"] == ["init done"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_job_api_logs_each_request_once_and_the_runner_in_the_same_format(tmp_path: Path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primary").write_text(KEY)
    (keys / "secondary").write_text("s" * 40)
    env = {**os.environ, "ENDPOINTS_AUTH_MODE": "key", "ENDPOINTS_KEYS_DIR": str(keys)}
    port = _free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "endpoints.local.batch_api",
                "--project",
                str(BATCH_FIXTURES / "project"),
                "--state-dir",
                str(tmp_path / "state"),
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            headers = {"authorization": f"Bearer {KEY}"}
            for _ in range(3):
                assert httpx.get(f"http://127.0.0.1:{port}/jobs", headers=headers).status_code == 200
            _wait_for(log, '"status":200')
            time.sleep(0.3)  # the access lines go out in batches (every 50 ms)
        finally:
            proc.terminate()
            proc.wait(15)
    records = _records(log.read_text(), "api.log")
    # One line per request (the frontend's; uvicorn's access log is off), none for the readiness polls.
    access = [r for r in records if r["logger"] == "serving.access"]
    assert [(r["message"], r["method"], r["status"]) for r in access] == [("GET other 200", "GET", 200)] * 3, records
    assert not [r for r in records if r["logger"] == "uvicorn.access"]
    assert any(r["logger"] == "uvicorn.error" for r in records)

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"f{i}.txt").write_text(f"{i}\n")
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "job_id": "job-1",
                "input": str(inputs),
                "output_dir": str(tmp_path / "out"),
                "entry_script": str(BATCH_FIXTURES / "score.py"),
                "mini_batch_size": 2,
                "environment_variables": {"ATTEMPTS_DIR": str(tmp_path)},
            }
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "serving.batch.runner", "--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    runner = _records(run.stderr, "runner stderr")
    assert runner, "the runner wrote no log line"
    assert {r["instance"] for r in runner if r["logger"] == "serving.batch.runner"} == {0}


def test_formatter_fields_and_ids():
    import logging

    from serving.logformat import JsonFormatter, process_identity
    from serving.requestid import current_request_id

    formatter = JsonFormatter(endpoint="shop", deployment="blue", fields={"instance": 1})
    record = logging.LogRecord("x.y", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    record.created = 1795447594.2351
    token = current_request_id.set(b"req-1")
    try:
        line = json.loads(formatter.format(record))
    finally:
        current_request_id.reset(token)
    assert line == {
        "time": "2026-11-23T15:26:34.235Z",
        "level": "warning",
        "logger": "x.y",
        "endpoint": "shop",
        "deployment": "blue",
        "request_id": "req-1",
        "trace_id": None,
        "message": "hello you",
        "instance": 1,
    }
    assert process_identity({"ENDPOINTS_ENDPOINT_NAME": "e", "SERVICE_NAME": "e", "SERVICE_VERSION": "d"}) == ("e", "d")
    assert process_identity({"SERVICE_VERSION": "1.0"}) == (None, None)
