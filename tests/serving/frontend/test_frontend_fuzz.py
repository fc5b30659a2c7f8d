"""Bounded fuzzing over raw sockets: malformed request lines, headers and bodies never crash the server and never
get a 5xx (424 comes from user code and is allowed)."""

from __future__ import annotations

import contextlib
import gzip
import re
import socket
import time

import httpx
import pytest
from frontend_serve import PRIMARY, serve_frontend
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from serving.frontend import FrontendSettings

STATUS = re.compile(rb"(?:^|\r?\n)HTTP/1\.[01] (\d{3})")

methods = st.one_of(
    st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "post"]),
    st.text(st.characters(codec="latin-1"), min_size=0, max_size=12),
)
paths = st.one_of(
    st.sampled_from(
        [
            "/score",
            "/",
            "/ready",
            "/metrics",
            "/swagger.json",
            "/score?a=1&b",
            "//score",
            "/score/",
            "/%00",
            "/..%2f..%2fetc/passwd",
            "*",
            "http://x/score",
            "/" + "a" * 5000,
        ]
    ),
    st.text(st.characters(codec="latin-1"), max_size=40).map(lambda t: "/" + t),
)
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 extra", "", "HTTP/9.9", "http/1.1"])
header_names = st.one_of(
    st.sampled_from(
        [
            "Authorization",
            "Content-Length",
            "Content-Encoding",
            "Transfer-Encoding",
            "X-Request-Id",
            "Content-Type",
            "Expect",
            "Host",
            "Connection",
            "authorization",
        ]
    ),
    st.text(st.characters(codec="latin-1"), min_size=0, max_size=20),
)
HEADER_VALUE_SAMPLES = [
    f"Bearer {PRIMARY}",
    "Bearer",
    "Bearer " + "x" * 20000,
    "Basic abc",
    "gzip",
    "deflate",
    "br, gzip",
    "chunked",
    "0",
    "-1",
    "99999999999999999999",
    "1e3",
    " 12 ",
    "100-continue",
    "close",
    "application/json",
    "x" * 101,
    "",
]
header_values = st.one_of(st.sampled_from(HEADER_VALUE_SAMPLES), st.text(st.characters(codec="latin-1"), max_size=60))
bodies = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=2048).map(gzip.compress),
    st.binary(max_size=2048).map(lambda b: gzip.compress(b)[: max(1, len(b) // 2)]),
    st.sampled_from([b'{"fail": true}', b'{"sleep": 5}', b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n"]),
)
line_ends = st.sampled_from(["\r\n", "\n", "\r"])


def _exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` and read what comes back until the server closes, 50 ms pass idle after data, or 2 s in all."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before taking everything
            sock.sendall(raw)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            sock.settimeout(0.05 if out else max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    (keys / "primary").write_text(PRIMARY)
    (keys / "secondary").write_text("s" * 40)
    fs = FrontendSettings(
        auth_mode="key",
        keys_dir=keys,
        request_timeout_ms=1000,
        max_body_bytes=4096,
        max_concurrent_requests=2,
        max_queue_wait_ms=100,
    )
    with serve_frontend(fs) as served:
        yield served


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
safe_paths = st.one_of(
    st.sampled_from(["/score", "/score", "/", "/ready", "/metrics", "/swagger.json", "/score?x=1", "/nope"]),
    st.from_regex(r"\A/[A-Za-z0-9._~%/?=&-]{0,30}\Z"),
)
safe_names = st.one_of(
    st.sampled_from(
        [
            "Authorization",
            "Content-Encoding",
            "X-Request-Id",
            "Content-Type",
            "Expect",
            "Accept",
            "Connection",
            "X-Ms-Client-Request-Id",
            "Azureml-Model-Deployment",
        ]
    ),
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,19}\Z"),
)
safe_values = st.one_of(st.sampled_from([v for v in HEADER_VALUE_SAMPLES if v.isprintable()]), printable)


@st.composite
def well_formed(draw) -> tuple[str, list[tuple[str, str]], str, bool]:
    """A syntactically valid request head with odd values and a matching length: reaches the frontend and the app."""
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST", "HEAD", "OPTIONS", "PUT", "DELETE"]))
    headers = draw(st.lists(st.tuples(safe_names, safe_values), max_size=6))
    if draw(st.booleans()):
        headers.append(("Authorization", f"Bearer {PRIMARY}"))  # half of the time, get past auth
    return f"{method} {draw(safe_paths)} HTTP/1.1", headers, "\r\n", True


@st.composite
def anything(draw) -> tuple[str, list[tuple[str, str]], str, bool]:
    """Anything in the shape of a request head, mostly invalid: the HTTP server's parser is fuzzed too."""
    line = f"{draw(methods)} {draw(paths)} {draw(versions)}".rstrip()
    return line, draw(st.lists(st.tuples(header_names, header_values), max_size=8)), draw(line_ends), False


@pytest.mark.slow
@pytest.mark.timeout(600)
@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(head=st.one_of(well_formed(), well_formed(), anything()), body=bodies)
def test_malformed_requests_never_get_5xx(fuzz_server, head, body):
    line, headers, eol, add_length = head
    if add_length and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        headers = [*headers, ("Content-Length", str(len(body)))]
    raw = (eol.join([line, *(f"{k}: {v}" for k, v in headers)]) + eol + eol).encode("latin-1", "replace") + body
    response = _exchange(fuzz_server.port, raw)
    statuses = [int(code) for code in STATUS.findall(response)]
    event(f"first status {statuses[0] if statuses else 'none (closed)'}")
    bad = [code for code in statuses if code >= 500 and code != 424]
    assert not bad, f"request {raw[:300]!r} got {statuses}: {response[:500]!r}"


@pytest.mark.slow
def test_server_still_healthy_after_fuzzing(fuzz_server):
    with httpx.Client(timeout=5) as c:
        assert c.get(fuzz_server.url + "/ready").status_code == 200
        r = c.post(fuzz_server.url + "/score", json={}, headers={"Authorization": f"Bearer {PRIMARY}"})
        assert r.status_code == 200
        metrics = c.get(fuzz_server.url + "/metrics").text
    assert re.search(r'status="5(?!24)\d\d"', metrics.replace('status="424"', "")) is None
