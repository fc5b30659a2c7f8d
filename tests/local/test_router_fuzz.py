"""Standing guard (issue 13): bounded fuzzing of malformed HTTP at the real serving process and at the real router in
front of it, over raw sockets. Bad request lines, huge heads, bad chunking, NUL bytes, deeply nested JSON: neither
process crashes, nothing gets a 5xx but 424 (the model's error), and both still serve afterwards.

Bounded in count (``max_examples``) and in time (``BUDGET_S``: examples after it pass without sending).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_helpers import REPO

pytestmark = pytest.mark.slow

SCRIPTS = REPO / "tests" / "serving" / "scripts"
STATUS = re.compile(rb"(?:^|\r\n)HTTP/1\.[01] (\d{3}) ")
BUDGET_S = 25.0
_started = [0.0]


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """The serving process (schema script, header timeout 1 s) and the router in front of it: their ports."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENDPOINTS_", "PROMETHEUS_"))}
    env.update(
        {
            "AML_APP_ROOT": str(SCRIPTS),
            "ENDPOINTS_HEADER_TIMEOUT_S": "1",
            "ENDPOINTS_REQUEST_TIMEOUT_MS": "5000",
            "ENDPOINTS_MAX_BODY_BYTES": "200000",
            "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "4",
        }
    )
    server_log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            "--entry-script",
            str(SCRIPTS / "schema_score.py"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        stdout=server_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(REPO),
    )
    router = router_log = None
    try:
        server_port = _wait_for(lambda: re.search(r"listening on http://127\.0\.0\.1:(\d+)", _read(tmp / "server.log")))
        server_url = f"http://127.0.0.1:{int(server_port.group(1))}"
        # Readiness, not liveness: "/" answers 200 while init() still runs, and /score would then answer 503.
        _wait_for(lambda: _ready(server_url, "/ready"))
        config = tmp / "routes.json"
        config.write_text(
            json.dumps(
                {
                    "table": {
                        "endpoint": "fuzz",
                        "deployments": ["blue"],
                        "traffic": {"blue": 100},
                        "mirror_traffic": {},
                    },
                    "upstreams": {"blue": server_url},
                    "timeouts_s": {"blue": 5.0},
                    "max_body_bytes": 200000,
                }
            )
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            router_port = s.getsockname()[1]
        router_log = (tmp / "router.log").open("wb")
        router = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "endpoints.local.router",
                "--config",
                str(config),
                "--port",
                str(router_port),
                "--header-timeout",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=router_log,
            cwd=str(REPO),
        )
        router_url = f"http://127.0.0.1:{router_port}"
        _wait_for(lambda: _ready(router_url))
        _started[0] = time.monotonic()
        yield {"server": (server, server_url, tmp / "server.log"), "router": (router, router_url, tmp / "router.log")}
    finally:
        for proc in (router, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        server_log.close()
        if router_log is not None:
            router_log.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def _ready(url: str, path: str = "/") -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url + path, timeout=2).status_code == 200
    return False


def _wait_for(probe, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("not started within the time")


def _exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw``; read until the peer closes, 100 ms pass idle after data, or 3 s in all (the header timeout
    is 1 s, so a request left incomplete is answered within that)."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            sock.settimeout(0.1 if out else max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
    return out


_bytes = st.binary(max_size=40)
methods = st.one_of(
    st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"G\x00T", b"", b"POST POST"]), _bytes
)
targets_ = st.one_of(
    st.sampled_from(
        [
            b"/score",
            b"/",
            b"/swagger.json",
            b"/score?scale=1",
            b"*",
            b"/sc\x00ore",
            b"/%00",
            b"/score?scale=" + b"[" * 3000 + b"]" * 3000,
            b"/" + b"a" * 5000,
        ]
    ),
    _bytes.map(lambda b: b"/" + b),
)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1\x00", b"", b"HTTP/1.1 x", b"http/1.1"])
names = st.one_of(
    st.sampled_from(
        [
            b"Content-Length",
            b"Transfer-Encoding",
            b"Content-Type",
            b"Content-Encoding",
            b"X-Request-Id",
            b"Host",
            b"Expect",
            b"Connection",
            b"azureml-model-deployment",
            b"X-\x00",
        ]
    ),
    st.binary(min_size=0, max_size=20),
)
values = st.one_of(
    st.sampled_from(
        [
            b"chunked",
            b"gzip",
            b"application/json",
            b"100-continue",
            b"close",
            b"0",
            b"-1",
            b"1e9",
            b"99999999999999999999",
            b"chunked, chunked",
            b"\x00",
            b"blue",
            b"",
        ]
    ),
    st.binary(max_size=40),
    st.integers(min_value=8000, max_value=20000).map(lambda n: b"v" * n),
)
nested = st.integers(min_value=500, max_value=100_000).map(lambda d: b'{"scale": ' + b"[" * d + b"]" * d + b"}")
bodies = st.one_of(
    st.binary(max_size=300),
    nested,
    st.sampled_from(
        [
            b"5\r\nhello\r\n0\r\n\r\n",
            b"zz\r\nxx\r\n",
            b"5\r\nhel",
            b"ffffffffffffffff\r\n",
            b"3;x=\x00\r\nabc\r\n0\r\n\r\n",
            b"0\r\n\r\n",
            b'{"scale": 2}',
        ]
    ),
)


@st.composite
def well_formed(draw) -> bytes:
    """A valid head with odd parts: reaches the frontend and the scoring app (JSON bodies, nested ones too)."""
    method = draw(st.sampled_from([b"POST", b"POST", b"POST", b"GET"]))
    target = draw(st.sampled_from([b"/score", b"/score", b"/score?scale=" + b"[" * 1500 + b"]" * 1500]))
    body = draw(st.one_of(nested, bodies))
    fields = [(b"Host", b"x"), (b"Content-Type", b"application/json")]
    if draw(st.integers(0, 3)) == 0:
        fields += draw(st.lists(st.tuples(names, values), max_size=3))
    if draw(st.booleans()):
        fields.append((b"Content-Length", str(len(body)).encode()))
    else:
        fields.append((b"Transfer-Encoding", b"chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if draw(st.booleans()) else body
    return (
        b"\r\n".join([method + b" " + target + b" HTTP/1.1", *(k + b": " + v for k, v in fields)]) + b"\r\n\r\n" + body
    )


@st.composite
def requests(draw) -> bytes:
    line = draw(methods) + b" " + draw(targets_) + b" " + draw(versions)
    fields = draw(st.lists(st.tuples(names, values), max_size=6))
    if draw(st.booleans()):
        fields += [(b"x-many-%d" % i, b"v") for i in range(draw(st.integers(90, 120)))]
    body = draw(bodies)
    if draw(st.booleans()):
        fields.append((b"Content-Length", str(len(body)).encode()))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    return eol.join([line, *(k + b": " + v for k, v in fields)]) + eol + eol + body


@pytest.mark.timeout(300)
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=st.one_of(requests(), well_formed()), which=st.sampled_from(["server", "router"]))
def test_malformed_http_never_gets_a_5xx_but_424(targets, raw, which):
    if time.monotonic() - _started[0] > BUDGET_S:
        return  # the time budget is spent: the remaining examples are not sent
    proc, url, log = targets[which]
    response = _exchange(int(url.rsplit(":", 1)[1]), raw)
    statuses = [int(code) for code in STATUS.findall(response)]
    bad = [code for code in statuses if code >= 500 and code != 424]
    assert not bad, f"{which}: request {raw[:300]!r} got {statuses}: {response[:500]!r}\n{_read(log)[-3000:]}"
    assert proc.poll() is None, f"{which} exited with {proc.returncode}:\n{_read(log)[-3000:]}"


def test_both_still_serve_after_fuzzing(targets):
    for which in ("server", "router"):
        proc, url, log = targets[which]
        assert proc.poll() is None, _read(log)[-3000:]
        assert httpx.get(url + "/", timeout=10).status_code == 200
        r = httpx.post(url + "/score", json={"scale": 2}, timeout=10)
        assert (r.status_code, r.json()) == (400, {"error": "A value is not provided for the 'matrix' parameter."})
