"""The router process's request-head limits (issue 13, item 3): 414/431 beyond gunicorn's limits, over raw sockets."""

from __future__ import annotations

import json
import re
import socket

import pytest
from local_helpers import router_config

STATUS = re.compile(rb"^HTTP/1\.1 (\d{3}) ")


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def _status_and_body(response: bytes) -> tuple[int, dict]:
    match = STATUS.match(response)
    assert match, response[:200]
    return int(match.group(1)), json.loads(response.partition(b"\r\n\r\n")[2])


@pytest.fixture
def router(upstreams, start_router):
    return start_router(router_config(upstreams, {"alice": 100}))


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
def test_router_request_head_limits(router, upstreams, head, status, error):
    assert _status_and_body(_exchange(router.port, head)) == (status, {"error": error})
    assert upstreams["alice"].seen == []


def test_router_refuses_a_huge_header_before_it_is_whole(router, upstreams):
    with socket.create_connection(("127.0.0.1", router.port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(b"v" * 65536)
                sent += 65536
        except OSError:
            pass  # the router stopped reading and closed
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert _status_and_body(out) == (431, {"error": "request head is over 823298 bytes"})
    assert upstreams["alice"].seen == []


def test_router_passes_the_largest_valid_head(router, upstreams):
    fields = b"".join(b"x-h%02d: %s\r\n" % (i, b"v" * (8190 - 5)) for i in range(98))
    head = b"GET /score?" + b"a" * 4000 + b" HTTP/1.1\r\nHost: x\r\n" + fields + b"Connection: close\r\n\r\n"
    response = _exchange(router.port, head)
    assert response.startswith(b"HTTP/1.1 200 "), response[:300]
    assert len(upstreams["alice"].seen) == 1
