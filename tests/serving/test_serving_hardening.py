"""Regression tests for the serving-process defects of issue 13, against the real server (``python -m serving``
with its run pool and production layer) over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import SCRIPTS

from serving.run_pool import RunPool

pytestmark = pytest.mark.slow

STATUS = re.compile(rb"^HTTP/1\.1 (\d{3}) ")


def _record_server(server, tmp_path: Path, **env: str):
    record = tmp_path / "calls.txt"
    record.write_text("")
    process = server(
        ["--entry-script", str(SCRIPTS / "record_score.py")],
        {"AML_APP_ROOT": str(SCRIPTS), "RECORD_FILE": str(record), **env},
    )
    process.wait_ready()
    return process, record


def _calls(record: Path) -> list[str]:
    return record.read_text().splitlines()


def _raw(port: int, data: bytes, *, close_after: bool = False, timeout: float = 20) -> bytes:
    """Send ``data``; return everything the server sends until it closes (or ``b""`` if we close first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server answered and closed before taking everything
            sock.sendall(data)
        if close_after:
            return b""
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


def _status_and_body(response: bytes) -> tuple[int, dict]:
    match = STATUS.match(response)
    assert match, response[:200]
    _head, _, body = response.partition(b"\r\n\r\n")
    return int(match.group(1)), json.loads(body)


# --- 1. a timed-out run() frees its place ----------------------------------------------------------------------


def test_after_a_timed_out_run_the_next_requests_are_served(server, tmp_path):
    """The issue's repro: one run thread, 1 s timeout, run() sleeping 10 s, then four fast requests."""
    process, record = _record_server(
        server, tmp_path, ENDPOINTS_MAX_CONCURRENT_REQUESTS="1", ENDPOINTS_REQUEST_TIMEOUT_MS="1000"
    )
    with httpx.Client(base_url=process.url, timeout=30) as client:
        slow = client.post("/score", content="sleep:10")
        assert slow.status_code == 408
        assert slow.json() == {"error": "request timed out after 1000 ms"}
        fast = [client.post("/score", content=f"fast{i}") for i in range(4)]
    assert [(r.status_code, r.json()) for r in fast] == [(200, {"bytes": 5})] * 4
    assert _calls(record) == ["8 sleep:10", "5 fast0", "5 fast1", "5 fast2", "5 fast3"]
    assert "a run() call timed out while running" in process.log


def test_a_call_that_timed_out_while_queued_never_starts():
    """The real RunPool with real threads: a queued call whose awaiting task is cancelled is skipped."""
    gate = threading.Event()
    started: list[str] = []

    def block() -> str:
        started.append("block")
        gate.wait(30)
        return "block"

    def mark(name: str) -> str:
        started.append(name)
        return name

    async def main() -> tuple[str, str]:
        pool = RunPool(1, "test", max_stuck=5)
        try:
            running = asyncio.ensure_future(pool.run(block, {}))
            while not started:
                await asyncio.sleep(0.01)
            queued = asyncio.ensure_future(pool.run(mark, {"name": "queued"}))
            await asyncio.sleep(0.05)  # the call is in the pool's queue behind the blocked one
            queued.cancel()
            await asyncio.gather(queued, return_exceptions=True)
            gate.set()
            first = await running
            after = await pool.run(mark, {"name": "after"})
            return first, after
        finally:
            pool.close()

    assert asyncio.run(main()) == ("block", "after")
    assert started == ["block", "after"]


def test_a_call_cancelled_while_running_gets_a_replacement_thread():
    gate = threading.Event()

    async def main() -> str:
        pool = RunPool(1, "test")
        try:
            running = asyncio.ensure_future(pool.run(gate.wait, {"timeout": 30}))
            await asyncio.sleep(0.1)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            return str(await pool.run(str, {"object": "served"}))
        finally:
            gate.set()
            pool.close()

    assert asyncio.run(main()) == "served"


def test_too_many_stuck_calls_recycle_the_worker(server, tmp_path):
    """Past the stuck-thread limit (one per run thread) the worker drains and exits 4; the master starts another."""
    process, _record = _record_server(
        server,
        tmp_path,
        ENDPOINTS_MAX_CONCURRENT_REQUESTS="2",
        ENDPOINTS_REQUEST_TIMEOUT_MS="1000",
        WORKER_COUNT="2",
    )
    with httpx.Client(base_url=process.url, timeout=30) as client:
        statuses: list[int | str] = []
        for _ in range(12):  # each worker has one run thread: two stuck calls in one worker recycle it
            try:
                statuses.append(client.post("/score", content="sleep:60").status_code)
            except httpx.TransportError:
                # A kept-alive connection to the worker that is exiting, or one still in its SO_REUSEPORT accept
                # queue when its listener closes: the kernel resets it (as with any pre-fork server's recycle).
                statuses.append("reset")
            if "recycled (run() calls stuck); starting a new one" in process.log:
                break
        # 408 for the stuck calls; 503 (draining, Retry-After) for one that reaches the recycling worker before its
        # listener closes.
        assert statuses[0] == 408
        assert set(statuses) <= {408, 503, "reset"}, statuses
        assert statuses.count("reset") <= 1, statuses
        assert "recycled (run() calls stuck); starting a new one" in process.log
    with httpx.Client(base_url=process.url, timeout=30) as client:  # no connection to the old worker is left
        deadline = time.monotonic() + 60
        while True:  # the new worker loads the script
            with contextlib.suppress(httpx.TransportError):
                if client.get("/ready").status_code == 200:
                    break
            assert time.monotonic() < deadline, process.log
            time.sleep(0.1)
        assert client.post("/score", content="after").json() == {"bytes": 5}
    assert process.proc.poll() is None


# --- 2. run() never sees an incomplete body --------------------------------------------------------------------


def test_run_never_sees_a_cut_off_body(server, tmp_path):
    process, record = _record_server(server, tmp_path, ENDPOINTS_MAX_BODY_BYTES="1000")
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, body = _status_and_body(_raw(process.port, head + (b"200\r\n" + b"b" * 512 + b"\r\n") * 4))
    assert (status, body) == (413, {"error": "request body is over the limit of 1000 bytes"})

    bomb = gzip.compress(b"c" * 100_000)
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    status, body = _status_and_body(_raw(process.port, head + bomb))
    assert (status, body) == (413, {"error": "request body is over the limit of 1000 bytes"})

    # Content-Length 1000, 10 bytes sent, then the client closes.
    _raw(process.port, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"d" * 10, close_after=True)

    with httpx.Client(base_url=process.url, timeout=30) as client:
        assert client.post("/score", content="whole").json() == {"bytes": 5}
    assert _calls(record) == ["5 whole"]


def test_run_never_sees_a_cut_off_body_without_the_frontend(server, tmp_path):
    record = tmp_path / "calls.txt"
    record.write_text("")
    process = server(
        ["--entry-script", str(SCRIPTS / "record_score.py"), "--no-frontend"],
        {"AML_APP_ROOT": str(SCRIPTS), "RECORD_FILE": str(record)},
    )
    process.wait_ready()
    _raw(process.port, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"d" * 10, close_after=True)
    with httpx.Client(base_url=process.url, timeout=30) as client:
        assert client.post("/score", content="whole").json() == {"bytes": 5}
    assert _calls(record) == ["5 whole"]


def _peak_rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) // 1024


def test_an_oversized_body_costs_memory_bounded_by_the_limit(server, tmp_path):
    """A 64 MiB chunked upload and a gzip body decoding to 256 MiB, limit 1 MB: 413, and the serving process's peak
    RSS grows by a few MiB at most (it used to grow by 64-128 MiB); run() is never called."""
    process, record = _record_server(server, tmp_path, ENDPOINTS_MAX_BODY_BYTES="1000000")
    before = _peak_rss_mib(process.proc.pid)
    with socket.create_connection(("127.0.0.1", process.port), timeout=30) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"b" * 0x100000 + b"\r\n"  # 1 MiB
        with contextlib.suppress(OSError):  # the server answers 413 and closes long before the end
            for _ in range(64):
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
    assert _status_and_body(out) == (413, {"error": "request body is over the limit of 1000000 bytes"})
    bomb = gzip.compress(b"c" * (256 << 20))
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    status, body = _status_and_body(_raw(process.port, head + bomb))
    assert (status, body) == (413, {"error": "request body is over the limit of 1000000 bytes"})
    after = _peak_rss_mib(process.proc.pid)
    assert after - before < 16, f"peak RSS {before} MiB before, {after} MiB after"
    assert _calls(record) == []


# --- 3. request-head limits ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    from serving_helpers import ServerProcess

    tmp = tmp_path_factory.mktemp("plain")
    record = tmp / "calls.txt"
    record.write_text("")
    process = ServerProcess(
        ["--entry-script", str(SCRIPTS / "record_score.py")],
        {"AML_APP_ROOT": str(SCRIPTS), "RECORD_FILE": str(record), "ENDPOINTS_HEADER_TIMEOUT_S": "1"},
        tmp / "server.log",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


@pytest.mark.parametrize(
    ("head", "status", "error"),
    [
        pytest.param(
            b"GET /score?" + b"a" * 4100 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "request target is over 4094 bytes",
            id="request-line",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(101)) + b"\r\n",
            431,
            "more than 100 header fields",
            id="fields",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 8200 + b"\r\n\r\n",
            431,
            "header field 'X-Big' is over 8190 bytes",
            id="field-size",
        ),
    ],
)
def test_request_head_limits(plain_server, head, status, error):
    assert _status_and_body(_raw(plain_server.port, head)) == (status, {"error": error})


def test_a_huge_header_is_refused_before_it_is_whole(plain_server):
    """A 32 MiB header value (never ended): 431 once the incomplete head passes 823298 bytes."""
    with socket.create_connection(("127.0.0.1", plain_server.port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(b"v" * 65536)
                sent += 65536
        except OSError:
            pass  # closed by the server
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert _status_and_body(out) == (431, {"error": "request head is over 823298 bytes"})


def test_head_limits_allow_the_largest_valid_head(plain_server):
    # 98 fields of the largest size, Host and Connection: 100 fields.
    fields = b"".join(b"x-h%02d: %s\r\n" % (i, b"v" * (8190 - 5)) for i in range(98))
    head = b"GET /?" + b"a" * 4000 + b" HTTP/1.1\r\nHost: x\r\n" + fields + b"Connection: close\r\n\r\n"
    response = _raw(plain_server.port, head)
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]


# --- 4. nested JSON --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory):
    from serving_helpers import ServerProcess

    tmp = tmp_path_factory.mktemp("schema")
    process = ServerProcess(
        ["--entry-script", str(SCRIPTS / "schema_score.py")], {"AML_APP_ROOT": str(SCRIPTS)}, tmp / "server.log"
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def test_deeply_nested_json_body_is_400(schema_server):
    body = b'{"scale": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with httpx.Client(base_url=schema_server.url, timeout=30) as client:
        r = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (400, {"error": "JSON input is nested too deeply"})


@pytest.mark.parametrize("script", ["schema_server", "plain_server"])
def test_deeply_nested_json_query_is_400(request, script):
    process = request.getfixturevalue(script)
    with httpx.Client(base_url=process.url, timeout=30) as client:
        r = client.get("/score?scale=" + "[" * 2000 + "]" * 2000)
    assert (r.status_code, r.json()) == (400, {"error": "JSON input is nested too deeply"})


# --- 5. head and body read timeouts; slow bodies do not hold slots ---------------------------------------------


def test_half_a_head_is_answered_408_and_closed(plain_server):
    response = _raw(plain_server.port, b"POST /score HTTP/1.1\r\nHost: x\r\n")
    assert _status_and_body(response) == (408, {"error": "request head not received within 1 s"})


def test_a_connection_that_sends_nothing_is_closed(plain_server):
    assert _raw(plain_server.port, b"") == b""


def test_a_stalled_body_is_answered_408_at_the_request_deadline_and_never_scored(server, tmp_path):
    """The body's read timeout is the request deadline: Content-Length 100, one byte sent, then nothing."""
    process, record = _record_server(server, tmp_path, ENDPOINTS_REQUEST_TIMEOUT_MS="1000")
    response = _raw(process.port, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
    assert _status_and_body(response) == (408, {"error": "request timed out after 1000 ms"})
    with httpx.Client(base_url=process.url, timeout=30) as client:
        assert client.post("/score", content="normal").json() == {"bytes": 6}
    assert _calls(record) == ["6 normal"]


def test_slow_bodies_do_not_take_the_admission_slots(server, tmp_path):
    process, record = _record_server(server, tmp_path, ENDPOINTS_REQUEST_TIMEOUT_MS="20000")
    slow = []
    try:
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", process.port), timeout=30)
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
            slow.append(sock)
        with httpx.Client(base_url=process.url, timeout=30) as client:
            statuses = [client.post("/score", content="normal").status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
    finally:
        for sock in slow:
            sock.close()
    assert _calls(record) == ["6 normal"] * 3


# --- 6. admission as Azure, request ids, token dates ------------------------------------------------------------


def test_admission_allows_twice_the_limit_pending(server, tmp_path):
    """max_concurrent 1: one runs, one waits, the third is 429 (Azure: 2 x max_concurrent x instances pending)."""
    process, _record = _record_server(
        server, tmp_path, ENDPOINTS_REQUEST_TIMEOUT_MS="20000", ENDPOINTS_MAX_QUEUE_WAIT_MS="15000"
    )
    results: dict[int, int] = {}

    def send(i: int) -> None:
        with httpx.Client(base_url=process.url, timeout=30) as client:
            results[i] = client.post("/score", content="sleep:3").status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results.values()) == [200, 200, 429]


def test_an_empty_request_id_is_replaced_by_one_id_in_the_answer_and_the_log(plain_server):
    with httpx.Client(base_url=plain_server.url, timeout=30) as client:
        r = client.post("/score", content="empty-id", headers={"x-request-id": ""})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid)
    assert r.headers["x-ms-request-id"] == rid
    deadline = time.monotonic() + 10
    while f'"request_id":"{rid}"' not in plain_server.log:  # the access log is written every 50 ms
        assert time.monotonic() < deadline, plain_server.log[-2000:]
        time.sleep(0.05)


def test_a_string_exp_claim_is_rejected(server, tmp_path):
    import jwt

    key = b"s" * 40
    (tmp_path / "signing-key").write_bytes(key)
    process = server(
        ["--entry-script", str(SCRIPTS / "text_score.py")],
        {
            "AML_APP_ROOT": str(SCRIPTS),
            "ENDPOINTS_AUTH_MODE": "aml_token",
            "ENDPOINTS_TOKEN_SIGNING_KEY_FILE": str(tmp_path / "signing-key"),
            "ENDPOINTS_ENDPOINT_NAME": "cars",
        },
    )
    process.wait_ready()
    exp = int(time.time()) + 3600
    good = jwt.encode({"aud": "cars", "exp": exp}, key, algorithm="HS256")
    stringy = jwt.encode({"aud": "cars", "exp": str(exp)}, key, algorithm="HS256")
    with httpx.Client(base_url=process.url, timeout=30) as client:
        ok = client.post("/score", content="hi", headers={"authorization": f"Bearer {good}"})
        refused = client.post("/score", content="hi", headers={"authorization": f"Bearer {stringy}"})
    assert ok.status_code == 200
    assert (refused.status_code, refused.json()) == (401, {"error": "missing or invalid credentials"})
