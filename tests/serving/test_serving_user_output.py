"""print() in a scoring script: one JSON log line per printed line, with the id of the request that printed it."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serving_helpers import SCRIPTS

pytestmark = pytest.mark.slow


def _user_lines(log: str) -> list[dict]:
    lines = []
    for text in log.splitlines():
        if text.startswith("{") and '"logger":"user"' in text:
            lines.append(json.loads(text))
    return lines


@pytest.mark.parametrize(("mode", "threads"), [("sync", "1"), ("sync", "4"), ("async", "1")])
def test_printed_lines_become_json_lines_with_the_request_id(server, mode: str, threads: str) -> None:
    env = {
        "PRINT_ASYNC": "1" if mode == "async" else "0",
        "ENDPOINTS_RUN_THREADS": threads,
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "8",
    }
    process = server(["--entry-script", str(SCRIPTS / "print_score.py")], env)
    process.wait_ready()
    tags = [f"t{i}" for i in range(12)]
    with httpx.Client(base_url=process.url, timeout=10) as client:

        def score(tag: str) -> tuple[str, str]:
            r = client.post("/score", json={"tag": tag}, headers={"x-request-id": f"req-{tag}"} if tag != "t0" else {})
            assert r.status_code == 200, r.text
            assert r.json() == {"tag": tag}
            return tag, r.headers["x-request-id"]

        with ThreadPoolExecutor(6) as pool:  # concurrent requests: lines must keep their own request's id
            ids = dict(pool.map(score, tags))
    assert ids["t3"] == "req-t3"
    deadline = time.monotonic() + 5
    while len(_user_lines(process.log)) < 2 + 3 * len(tags) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = _user_lines(process.log)
    init = [line for line in lines if line["request_id"] is None]
    assert [line["message"] for line in init] == ["init: model loaded", "partial"]
    for tag, rid in ids.items():
        mine = [line["message"] for line in lines if line["request_id"] == rid]
        assert mine == [f"scoring {tag}", "two words", f'quote " and backslash \\ in {tag}'], (tag, lines)
    assert len(lines) == 2 + 3 * len(tags)
    fields = ["time", "level", "logger", "endpoint", "deployment", "request_id", "trace_id", "message"]
    assert all(list(line) == fields for line in lines)
    assert all(line["level"] == "info" and line["time"].endswith("Z") for line in lines)
