"""The router process on raw sockets: framing, keep-alive and pipelining, broken peers, timeouts, shutdown."""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time

import httpx
import pytest
from local_helpers import RawUpstream, read_responses, recv_until_closed, router_config


def _connect(router) -> socket.socket:
    return socket.create_connection(("127.0.0.1", router.port), timeout=10)


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: example\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


@pytest.fixture
def raw_upstream():
    started: list[RawUpstream] = []

    def start(behaviour: str) -> RawUpstream:
        up = RawUpstream(behaviour)
        started.append(up)
        return up

    yield start
    for up in started:
        up.stop()


def test_chunked_request_body_arrives_whole_in_pieces(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"a" * 7, b"b" * 300, b"c"):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.05)
        sock.sendall(b"0\r\n\r\n")
        [response] = read_responses(sock, 1)
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"deployment": "alice", "body_bytes": 308}
    seen = upstreams["alice"].seen[-1]
    assert seen["body"] == b"a" * 7 + b"b" * 300 + b"c"
    assert dict(seen["headers"])["transfer-encoding"] == "chunked"


def test_pipelined_requests_are_answered_in_order_on_one_connection(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(b"".join(_post(f"/score?n={n}", b"x" * n) for n in (1, 2, 3)))
        responses = read_responses(sock, 3)
        # The connection stays open for more.
        sock.sendall(_post("/score", b"y" * 4))
        responses += read_responses(sock, 1)
    assert [(r["status"], json.loads(r["body"])["body_bytes"]) for r in responses] == [(200, n) for n in (1, 2, 3, 4)]
    assert [s["query"] for s in upstreams["alice"].seen] == ["n=1", "n=2", "n=3", ""]
    # Sequential on the upstream side too: one kept-alive connection carried all four.
    assert len({s["client_port"] for s in upstreams["alice"].seen}) == 1


def test_pipelined_error_answers_keep_their_place(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(
            _post("/score", b"1")
            + _post("/score", b"2", "azureml-model-deployment: dave\r\n")
            + _post("/score", b"333")
        )
        responses = read_responses(sock, 3)
    assert [r["status"] for r in responses] == [200, 404, 200]
    assert json.loads(responses[1]["body"]) == {
        "error": "endpoint 'cars' has no deployment named 'dave' (deployments: alice, bob, carol)"
    }
    assert json.loads(responses[2]["body"])["body_bytes"] == 3


def test_client_gone_mid_body_does_not_reach_or_poison_the_pool(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: example\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
        time.sleep(0.3)
    r = client.post(router.url + "/score", content=b"after")
    assert r.status_code == 200 and r.json() == {"deployment": "alice", "body_bytes": 5}
    seen = upstreams["alice"].seen
    assert seen[-1]["body"] == b"after"
    # The cut request never completed upstream, and its upstream connection was closed, not reused.
    assert all(len(s["body"]) < 100000 for s in seen[:-1])
    assert all(s["client_port"] != seen[-1]["client_port"] for s in seen[:-1])


@pytest.mark.parametrize("behaviour", ["close", "half-head"])
def test_deployment_dying_before_its_answer_is_502(raw_upstream, start_router, client, behaviour):
    up = raw_upstream(behaviour)
    router = start_router(router_config({"alice": up}, {"alice": 100}))
    for _ in range(2):
        r = client.post(router.url + "/score", content=b"{}")
        assert (r.status_code, r.json()) == (502, {"error": "deployment 'alice' is not reachable"})
    assert len(up.requests) == 2 and up.requests[0].startswith(b"POST /score HTTP/1.1\r\n")


def test_deployment_dying_mid_body_cuts_the_response_short(raw_upstream, start_router, client):
    up = raw_upstream("half-body")
    router = start_router(router_config({"alice": up}, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(_post("/score", b"{}"))
        data, _ = recv_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 100\r\n" in data and data.endswith(b"\r\n\r\n0123456789")
    # The router itself is fine: the next cut-short answer is cut short the same way.
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(router.url + "/score", content=b"{}")
    assert router.proc.poll() is None and len(up.requests) == 2


def test_response_ended_by_close_is_rechunked_for_the_client(raw_upstream, start_router, client):
    up = raw_upstream("until-close")
    router = start_router(router_config({"alice": up}, {"alice": 100}))
    r = client.post(router.url + "/score", content=b"{}")
    assert (r.status_code, r.text) == (200, "no length here")
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.headers["azureml-model-deployment"] == "alice"


@pytest.mark.parametrize(
    ("behaviour", "status", "headers", "body"),
    [
        pytest.param(
            "plain",
            201,
            {"content-type": "text/plain", "x-custom": "a, b", "content-length": "5"},
            b"hello",
            id="passes-whole",
        ),
        pytest.param("hop", 200, {"x-keep": "2", "content-length": "2"}, b"ok", id="hop-by-hop-dropped"),
    ],
)
def test_response_head_passes_through_exactly(raw_upstream, start_router, behaviour, status, headers, body):
    up = raw_upstream(behaviour)
    router = start_router(router_config({"alice": up}, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(_post("/score", b"{}"))
        [response] = read_responses(sock, 1)
    assert response["status"] == status and response["body"] == body
    assert response["headers"] == {**headers, "azureml-model-deployment": "alice"}


def test_answer_before_the_body_ends_goes_out_and_the_rest_is_dropped(raw_upstream, start_router):
    up = raw_upstream("early")
    router = start_router(router_config({"alice": up}, {"alice": 100}))
    with _connect(router) as sock:
        # Far more than the router's send buffer (tcp_wmem: 4 MiB at most) and the upstream's fixed receive buffer hold:
        # the answer comes after at most those, and the router sees it while the body is still going out (at most
        # one more send buffer in the same loop turn), however the two processes are scheduled.
        first = _post("/score", b"b" * 24_000_000)
        sock.sendall(first)
        [response] = read_responses(sock, 1)
        assert (response["status"], response["body"]) == (401, b"nope")
        # The connection is still good for the next request (the dropped body was read to its end).
        sock.sendall(_post("/score", b"{}"))
        [response] = read_responses(sock, 1)
    assert (response["status"], response["body"]) == (401, b"nope")
    assert len(up.requests) == 2  # a new upstream connection: the first one could not be reused
    # The first connection carried (part of) the first request and nothing else: it was closed, not reused.
    assert up.carried[0].count(b"POST /score ") == 1 and up.carried[0].endswith(b"b" * 1000)


def test_expect_100_continue_over_the_limit_is_413_without_continue(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}, max_body_bytes=1000))
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: example\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        data, _ = recv_until_closed(sock, 10)
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n") and b"\r\nconnection: close" in head
    assert json.loads(body) == {"error": "request body is larger than 1000 bytes"}
    assert upstreams["alice"].seen == []


def test_expect_100_continue_is_answered_by_the_router(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        [interim] = read_responses(sock, 1)
        assert interim["status"] == 100
        sock.sendall(b"hello")
        [response] = read_responses(sock, 1)
    assert response["status"] == 200 and json.loads(response["body"])["body_bytes"] == 5
    assert "expect" not in dict(upstreams["alice"].seen[-1]["headers"])


def test_http10_client_gets_its_answer_then_close(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.0\r\nHost: example\r\nContent-Length: 2\r\n\r\n{}")
        data, _ = recv_until_closed(sock, 10)
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nconnection: close" in head
    assert json.loads(body) == {"deployment": "alice", "body_bytes": 2}


def test_invalid_request_is_400_and_closed(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}))
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: example\r\nContent-Length: 12x\r\n\r\n")
        data, _ = recv_until_closed(sock, 10)
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert json.loads(body) == {"error": "invalid HTTP request: Invalid character in Content-Length"}
    assert upstreams["alice"].seen == []


def test_slowloris_head_is_408_after_the_header_timeout(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}), ("--header-timeout", "0.5"))
    with _connect(router) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /score HTTP/1.1\r\n")
        for i in range(40):  # one header line every 0.1 s, until the router answers
            if select.select([sock], [], [], 0.1)[0]:
                break
            sock.sendall(b"x-drip-%d: 1\r\n" % i)
        data, _ = recv_until_closed(sock, 5)
        elapsed = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert data.endswith(b'{"error": "request head not received within 0.5 s"}')
    assert 0.5 <= elapsed < 2.5, elapsed
    assert upstreams["alice"].seen == []


def test_stalled_body_is_408_after_the_body_timeout(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}), ("--body-timeout", "0.5"))
    with _connect(router) as sock:
        traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: example\r\nx-request-id: s1\r\ntraceparent: %s\r\n"
            b"Content-Length: 10\r\n\r\n12345" % traceparent
        )
        data, elapsed = recv_until_closed(sock, 5)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert data.endswith(b'{"error": "request body not received: nothing for 0.5 s"}')
    # The request's id and trace context, as on every answer the router makes for a request it read the head of.
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert [b"x-request-id: s1", b"x-ms-request-id: s1", b"traceparent: " + traceparent] == [
        line for line in head if line.startswith((b"x-request-id", b"x-ms-request-id", b"traceparent"))
    ]
    assert 0.5 <= elapsed < 2.0, elapsed


def test_idle_keepalive_connection_is_closed(upstreams, start_router):
    router = start_router(router_config(upstreams, {"alice": 100}), ("--keepalive-timeout", "0.5"))
    with _connect(router) as sock:
        sock.sendall(_post("/score", b"{}"))
        [response] = read_responses(sock, 1)
        assert response["status"] == 200
        data, elapsed = recv_until_closed(sock, 5)
    assert data == b"" and 0.4 <= elapsed < 2.0, elapsed


def test_sigterm_lets_a_request_in_flight_finish(upstreams, start_router):
    upstreams["alice"].mode = "slow"
    upstreams["alice"].delay = 1.0
    router = start_router(router_config(upstreams, {"alice": 100}))
    result: dict = {}

    def call() -> None:
        with httpx.Client(timeout=10) as c:
            result["response"] = c.post(router.url + "/score", content=b"{}")

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 30
    while not upstreams["alice"].seen and time.monotonic() < deadline:  # the request is in flight at the upstream
        time.sleep(0.02)
    assert upstreams["alice"].seen, "the request never reached the upstream"
    router.proc.send_signal(signal.SIGTERM)
    thread.join(10)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"deployment": "alice", "body_bytes": 2}
    assert router.proc.wait(10) == 0


def test_mirrored_streamed_body_reaches_both_whole(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}, {"bob": 100}))

    def chunks():
        for i in range(30):
            yield bytes([97 + i % 26]) * 10_000

    r = client.post(router.url + "/score", content=chunks())
    assert r.status_code == 200 and r.json() == {"deployment": "alice", "body_bytes": 300_000}
    deadline = time.monotonic() + 5
    while not upstreams["bob"].seen and time.monotonic() < deadline:
        time.sleep(0.05)
    live, copy = upstreams["alice"].seen[-1], upstreams["bob"].seen[-1]
    assert copy["body"] == live["body"] and len(copy["body"]) == 300_000
    assert dict(copy["headers"])["content-length"] == "300000"
    assert dict(copy["headers"])["x-request-id"] == dict(live["headers"])["x-request-id"]
