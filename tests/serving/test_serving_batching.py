"""Adaptive batching with the real server process: run_batch() scripts over real sockets (serving.batching)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import SCRIPTS, connect_refused

from serving.batching import Batcher, BatchSettings, run_items

RUN_ERROR = {"error": "An unexpected error occurred in scoring script. Check the logs for more info."}


def batch_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "AML_APP_ROOT": str(SCRIPTS),
        "ENDPOINTS_MAX_BATCH_SIZE": "32",
        "ENDPOINTS_MAX_BATCH_WAIT_MS": "5",
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "600",
        "ENDPOINTS_MAX_QUEUE_WAIT_MS": "60000",
        "ENDPOINTS_REQUEST_TIMEOUT_MS": "60000",
        "ENDPOINTS_RUN_THREADS": "1",
        "GATE_DIR": str(tmp_path),
        **extra,
    }


def start(server, env: dict[str, str]):
    process = server(["--entry-script", str(SCRIPTS / "batch_score.py")], env)
    process.wait_ready()
    return process


def metric(process, name: str) -> float:
    text = httpx.get(f"{process.url}/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    assert match is not None, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


def wait_metric(process, name: str, value: float, timeout: float = 30) -> None:
    """Readiness poll (not a timed assertion): wait until the metric reaches ``value``."""
    deadline = time.monotonic() + timeout
    while metric(process, name) < value:
        assert time.monotonic() < deadline, f"{name} did not reach {value}:\n{process.log}"
        time.sleep(0.02)


async def post_all(url: str, items: list[dict], ids: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(items), max_keepalive_connections=len(items))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        calls = [
            client.post("/score", content=json.dumps(item).encode(), headers={"x-request-id": rid})
            for item, rid in zip(items, ids, strict=True)
        ]
        return await asyncio.gather(*calls)


def post_in_thread(url: str, item: dict, rid: str, out: dict[str, httpx.Response]) -> threading.Thread:
    def call() -> None:
        out[rid] = httpx.post(
            f"{url}/score", content=json.dumps(item).encode(), headers={"x-request-id": rid}, timeout=60
        )

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_500_concurrent_requests_each_get_their_own_answer(server, tmp_path: Path) -> None:
    process = start(server, batch_env(tmp_path, BATCH_SLEEP_S="0.005"))
    items = [{"x": i * 7 + 3} for i in range(500)]
    ids = [f"req-{i}" for i in range(500)]
    responses = asyncio.run(post_all(process.url, items, ids))
    for item, rid, response in zip(items, ids, responses, strict=True):
        assert response.status_code == 200, (rid, response.text)
        body = response.json()
        assert (body["x"], body["double"]) == (item["x"], item["x"] * 2)
        assert response.headers["x-request-id"] == rid
    # Each request counted once, and requests really were grouped: fewer model calls than requests.
    assert metric(process, "endpoints_batch_size_sum") == 500
    assert metric(process, "endpoints_batch_size_count") < 500
    assert max(r.json()["size"] for r in responses) > 1
    assert metric(process, "endpoints_batch_max_size") == 32
    assert metric(process, "endpoints_batch_max_wait_seconds") == 0.005
    assert metric(process, 'endpoints_requests_total{route="/score",status="200"}') == 500


def test_a_poisoned_item_fails_only_its_own_request(server, tmp_path: Path) -> None:
    process = start(server, batch_env(tmp_path))
    out: dict[str, httpx.Response] = {}
    # A gated request holds the model, so the next twenty queue and go as one batch once it is released.
    holder = post_in_thread(process.url, {"x": -1, "gate": "open"}, "holder", out)
    wait_metric(process, "endpoints_batch_size_count", 1)
    items = [{"x": i} for i in range(20)]
    items[7]["poison"] = True
    threads = [post_in_thread(process.url, item, f"req-{i}", out) for i, item in enumerate(items)]
    wait_metric(process, "endpoints_requests_in_flight", 21)
    (tmp_path / "open").touch()
    for thread in [holder, *threads]:
        thread.join(timeout=60)
    assert out["holder"].status_code == 200
    assert out["req-7"].status_code == 424
    assert out["req-7"].json() == RUN_ERROR
    assert out["req-7"].headers["x-request-id"] == "req-7"
    for i in range(len(items)):
        if i == 7:
            continue
        response = out[f"req-{i}"]
        assert response.status_code == 200, response.text
        # run_batch() raised for the whole batch: each item was run again alone with run().
        assert response.json() == {"x": i, "double": 2 * i, "path": "run", "size": 1}
        assert response.headers["x-request-id"] == f"req-{i}"
    assert metric(process, "endpoints_batch_fallbacks_total") == 1
    assert "run_batch() raised for a batch of 20 items; running each item alone" in process.log


def test_timeouts_inside_a_batch_answer_408_and_the_next_batch_runs(server, tmp_path: Path) -> None:
    process = start(server, batch_env(tmp_path, ENDPOINTS_REQUEST_TIMEOUT_MS="5000", ENDPOINTS_RUN_THREADS="2"))
    out: dict[str, httpx.Response] = {}
    holder = post_in_thread(process.url, {"x": -1, "gate": "first"}, "holder", out)
    wait_metric(process, "endpoints_batch_size_count", 1)
    # One stuck item (its gate never opens while they wait) and three quick ones, queued into one batch.
    items = [{"x": 100, "gate": "never"}, {"x": 101}, {"x": 102}, {"x": 103}]
    threads = [post_in_thread(process.url, item, f"req-{item['x']}", out) for item in items]
    wait_metric(process, "endpoints_requests_in_flight", 5)
    (tmp_path / "first").touch()
    holder.join(timeout=60)
    for thread in threads:
        thread.join(timeout=60)
    assert out["holder"].status_code == 200
    assert out["holder"].json() == {"x": -1, "double": -2, "path": "run", "size": 1}
    for item in items:
        response = out[f"req-{item['x']}"]
        assert response.status_code == 408, response.text
        assert response.json() == {"error": "request timed out after 5000 ms"}
        assert response.headers["x-request-id"] == f"req-{item['x']}"
    assert metric(process, "endpoints_batch_size_count") == 2  # the four went as one batch
    # The stuck call still holds a pool thread; the batch it belonged to no longer holds the next one back.
    after = asyncio.run(post_all(process.url, [{"x": 7}, {"x": 8}], ["after-7", "after-8"]))
    assert [r.status_code for r in after] == [200, 200]
    assert [(r.json()["x"], r.headers["x-request-id"]) for r in after] == [(7, "after-7"), (8, "after-8")]
    (tmp_path / "never").touch()  # let the stuck call end; its answers go nowhere


def test_sigterm_with_batches_in_flight_answers_every_request(server, tmp_path: Path) -> None:
    process = start(server, batch_env(tmp_path, ENDPOINTS_MAX_BATCH_SIZE="8", BATCH_SLEEP_S="0.05"))
    out: dict[str, httpx.Response] = {}
    # The first request holds the model (gated) while 39 more queue behind it: five batches still to run.
    threads = [post_in_thread(process.url, {"x": 0, "gate": "open"}, "req-0", out)]
    wait_metric(process, "endpoints_batch_size_count", 1)
    threads += [post_in_thread(process.url, {"x": i}, f"req-{i}", out) for i in range(1, 40)]
    wait_metric(process, "endpoints_requests_in_flight", 40)
    assert metric(process, "endpoints_batch_size_sum") == 1  # the other 39 are queued for batches
    process.terminate()
    (tmp_path / "open").touch()
    for thread in threads:
        thread.join(timeout=60)
    assert process.wait(timeout=60) == 0
    assert connect_refused(process.port)
    for i in range(40):
        response = out[f"req-{i}"]
        assert response.status_code == 200, response.text
        assert response.json()["x"] == i
        assert response.headers["x-request-id"] == f"req-{i}"
    assert "run_batch" in {out[f"req-{i}"].json()["path"] for i in range(40)}


def test_script_without_run_batch_is_served_one_by_one(server, tmp_path: Path) -> None:
    env = batch_env(tmp_path)
    process = server(["--entry-script", str(SCRIPTS / "text_score.py")], env)
    process.wait_ready()
    response = httpx.post(f"{process.url}/score", content=b"hello", timeout=10)
    assert response.status_code == 200
    assert "ENDPOINTS_MAX_BATCH_SIZE=32: batching off: the entry script defines no run_batch(items)" in process.log


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"ENDPOINTS_MAX_BATCH_SIZE": "0"},
            "environment variable ENDPOINTS_MAX_BATCH_SIZE: got '0'; Input should be greater than or equal to 1",
            id="size-zero",
        ),
        pytest.param(
            {"ENDPOINTS_MAX_BATCH_SIZE": "many"},
            "environment variable ENDPOINTS_MAX_BATCH_SIZE: got 'many'; Input should be a valid integer, unable to "
            "parse string as an integer",
            id="size-text",
        ),
        pytest.param(
            {"ENDPOINTS_MAX_BATCH_SIZE": "8", "ENDPOINTS_MAX_BATCH_WAIT_MS": "-1"},
            "environment variable ENDPOINTS_MAX_BATCH_WAIT_MS: got '-1'; Input should be greater than or equal to 0",
            id="wait-negative",
        ),
    ],
)
def test_bad_batch_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as e:
        BatchSettings.from_env(env)
    assert str(e.value) == message


def test_bad_batch_settings_stop_the_server_with_status_3(server, tmp_path: Path) -> None:
    process = server(
        ["--entry-script", str(SCRIPTS / "batch_score.py")], batch_env(tmp_path, ENDPOINTS_MAX_BATCH_SIZE="x")
    )
    assert process.wait(timeout=60) == 3
    assert "environment variable ENDPOINTS_MAX_BATCH_SIZE: got 'x'" in process.log


# ---------------------------------------------------------------------------------------------------------------------
# The batcher on its own event loop (no server): how batches form.
# ---------------------------------------------------------------------------------------------------------------------


def test_lone_requests_go_at_once_and_load_fills_batches() -> None:
    calls: list[list[int]] = []

    async def scenario() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        release = asyncio.Event()
        tasks: list[asyncio.Task] = []

        def execute(items: list[int], ids: list[object]) -> asyncio.Future:
            calls.append(list(items))
            future = loop.create_future()

            async def finish() -> None:
                if items[0] == 0:
                    await release.wait()  # the first batch holds the model while others queue
                future.set_result([(True, item * 10) for item in items])

            tasks.append(loop.create_task(finish()))
            return future

        batcher = Batcher(execute, BatchSettings(max_batch_size=4, max_batch_wait_ms=1))
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0)
        release.set()
        answers = await asyncio.gather(first, *rest)
        return answers, [batcher.queued]

    answers, queued = asyncio.run(scenario())
    assert answers == [i * 10 for i in range(10)]
    assert queued == [0]
    # The lone first request went alone, at once; the nine queued behind it went in batches of at most four, and the
    # last one after its short wait for company.
    assert calls == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


def test_run_items_falls_back_per_item_on_a_wrong_length() -> None:
    # In a copied context: run_items sets the request id of each item, as it does in a pool thread.
    outcomes = contextvars.copy_context().run(
        run_items, lambda items: [1], lambda item: item + 1, [1, 2, 3], [b"a", b"b", b"c"]
    )
    assert outcomes == [(True, 2), (True, 3), (True, 4)]
