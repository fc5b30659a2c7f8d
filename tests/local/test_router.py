"""The local router process over real sockets: split, pins, mirroring, headers, limits, reload."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from local_helpers import Upstream, router_config

N = 500


def _count(client, url, n=N, **kwargs):
    counts = Counter()
    for _ in range(n):
        r = client.post(url + "/score", json={"x": 1}, **kwargs)
        assert r.status_code == 200, r.text
        assert r.json()["deployment"] == r.headers["azureml-model-deployment"]
        counts[r.headers["azureml-model-deployment"]] += 1
    return counts


def test_500_requests_at_90_10_land_within_5_points(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 90, "bob": 10}))
    counts = _count(client, router.url)
    assert abs(counts["alice"] / N - 0.90) <= 0.05
    assert abs(counts["bob"] / N - 0.10) <= 0.05
    assert counts["alice"] + counts["bob"] == N
    assert len(upstreams["alice"].seen) == counts["alice"]
    assert len(upstreams["bob"].seen) == counts["bob"]
    assert upstreams["carol"].seen == []


def test_zero_percent_deployment_gets_none(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100, "bob": 0}))
    assert _count(client, router.url) == {"alice": N}
    assert upstreams["bob"].seen == []


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_10_percent_mirror_gets_10_percent_and_clients_see_only_live(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}, {"bob": 10}))
    assert _count(client, router.url) == {"alice": N}
    _wait_for(lambda: len(upstreams["bob"].seen) >= 50)
    time.sleep(0.3)
    mirrored = len(upstreams["bob"].seen)
    assert abs(mirrored - 50) <= 2.5, mirrored  # 10 % +/- 5 % relative
    # The copy is the same request: same path, body and request id as the live one.
    live_ids = {dict(s["headers"])["x-request-id"] for s in upstreams["alice"].seen}
    copy = upstreams["bob"].seen[0]
    assert dict(copy["headers"])["x-request-id"] in live_ids
    assert copy["path"] == "/score" and copy["body"] == b'{"x":1}'
    # Copies are marked as such; live requests are not.
    assert {dict(s["headers"]).get("x-endpoints-mirror") for s in upstreams["bob"].seen} == {"1"}
    assert {dict(s["headers"]).get("x-endpoints-mirror") for s in upstreams["alice"].seen} == {None}


def test_mirror_answering_500_never_reaches_clients(upstreams, start_router, client):
    upstreams["bob"].mode = "error"
    router = start_router(router_config(upstreams, {"alice": 100}, {"bob": 10}))
    assert _count(client, router.url) == {"alice": N}
    _wait_for(lambda: len(upstreams["bob"].seen) >= 50)
    assert 47 <= len(upstreams["bob"].seen) <= 53


def test_stopped_mirror_never_reaches_clients(upstreams, start_router, client):
    upstreams["bob"].stop()
    router = start_router(router_config(upstreams, {"alice": 100}, {"bob": 10}))
    assert _count(client, router.url) == {"alice": N}


def test_slow_mirror_does_not_slow_clients(upstreams, start_router, client):
    upstreams["bob"].mode = "slow"
    upstreams["bob"].delay = 3.0
    router = start_router(router_config(upstreams, {"alice": 100}, {"bob": 50}))
    worst = 0.0
    for _ in range(100):
        start = time.perf_counter()
        r = client.post(router.url + "/score", json={"x": 1})
        worst = max(worst, time.perf_counter() - start)
        assert r.status_code == 200 and r.headers["azureml-model-deployment"] == "alice"
    assert worst < 1.0, worst


def test_pinned_requests_are_never_mirrored(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}, {"bob": 50}))
    for name in ("alice", "carol"):
        counts = _count(client, router.url, n=100, headers={"azureml-model-deployment": name})
        assert counts == {name: 100}
    time.sleep(0.5)
    assert upstreams["bob"].seen == []
    # Pinning the mirror deployment itself reaches it (and only once per request).
    assert _count(client, router.url, n=10, headers={"azureml-model-deployment": "bob"}) == {"bob": 10}
    assert len(upstreams["bob"].seen) == 10


def test_unknown_pin_is_404_naming_it(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    r = client.post(router.url + "/score", json={}, headers={"azureml-model-deployment": "dave"})
    assert r.status_code == 404
    assert r.json() == {"error": "endpoint 'cars' has no deployment named 'dave' (deployments: alice, bob, carol)"}
    assert all(up.seen == [] for up in upstreams.values())


def test_no_live_traffic_is_404(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {}))
    r = client.post(router.url + "/score", json={})
    assert r.status_code == 404
    assert r.json() == {
        "error": "endpoint 'cars' has no deployment with live traffic; set traffic or pin a deployment with the"
        " azureml-model-deployment header"
    }


def test_headers_pass_through_and_hop_by_hop_are_dropped(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    r = client.post(
        router.url + "/score?verbose=1",
        content=b"payload",
        headers={
            "Authorization": "Bearer k3y",
            "x-request-id": "req-123",
            "x-ms-client-request-id": "client-9",
            "Connection": "keep-alive, x-drop-me",
            "x-drop-me": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Content-Type": "text/plain",
        },
    )
    assert r.status_code == 200
    seen = upstreams["alice"].seen[-1]
    headers = dict(seen["headers"])
    assert headers["authorization"] == "Bearer k3y"
    assert headers["x-request-id"] == "req-123"
    assert headers["x-ms-client-request-id"] == "client-9"
    assert headers["content-type"] == "text/plain"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{router.port}"
    for hop in ("x-drop-me", "keep-alive", "te"):
        assert hop not in headers
    assert seen["query"] == "verbose=1" and seen["body"] == b"payload"
    # Response side: upstream's own headers pass, its hop-by-hop ones do not.
    assert r.headers["x-upstream"] == "alice"
    assert "x-secret-hop" not in r.headers and "keep-alive" not in r.headers


def test_request_id_generated_when_absent(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    client.post(router.url + "/score", json={})
    rid = dict(upstreams["alice"].seen[-1]["headers"])["x-request-id"]
    assert len(rid) == 36 and rid.count("-") == 4


def test_body_over_limit_is_413_by_length_and_by_stream(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}, max_body_bytes=1000))
    r = client.post(router.url + "/score", content=b"x" * 1001)
    assert (r.status_code, r.json()) == (413, {"error": "request body is larger than 1000 bytes"})

    def chunks():
        for _ in range(5):
            yield b"y" * 400

    r = client.post(router.url + "/score", content=chunks())  # chunked: no content-length
    assert (r.status_code, r.json()) == (413, {"error": "request body is larger than 1000 bytes"})
    r = client.post(router.url + "/score", content=b"z" * 1000)
    assert r.status_code == 200 and r.json()["body_bytes"] == 1000


def test_streamed_body_reaches_upstream_whole(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))

    def chunks():
        for i in range(100):
            yield bytes([65 + i % 26]) * 10_000

    r = client.post(router.url + "/score", content=chunks())
    assert r.status_code == 200 and r.json()["body_bytes"] == 1_000_000


def test_unreachable_deployment_is_502(upstreams, start_router, client):
    upstreams["alice"].stop()
    router = start_router(router_config(upstreams, {"alice": 100}))
    r = client.post(router.url + "/score", json={})
    assert (r.status_code, r.json()) == (502, {"error": "deployment 'alice' is not reachable"})


def test_answers_of_the_router_itself_carry_the_request_id_and_traceparent(upstreams, start_router, client):
    """404, 413 and 502 come from the router, not a deployment: like the serving layer's own answers they echo the
    request id (x-request-id and Azure's x-ms-request-id) and a valid traceparent, so a failure can be traced."""
    upstreams["bob"].stop()
    router = start_router(router_config(upstreams, {"bob": 100}, max_body_bytes=10))
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    cases = [
        ({"azureml-model-deployment": "dave"}, b"{}", 404),  # not routed: nobody to answer
        ({"azureml-model-deployment": "alice"}, b"x" * 11, 413),  # routed, refused by Content-Length
        ({}, b"{}", 502),  # routed to bob, who is down
    ]
    for i, (headers, body, status) in enumerate(cases):
        r = client.post(
            router.url + "/score",
            content=body,
            headers={**headers, "x-request-id": f"c{i}", "traceparent": traceparent},
        )
        echoed = (r.status_code, r.headers["x-request-id"], r.headers["x-ms-request-id"], r.headers["traceparent"])
        assert echoed == (status, f"c{i}", f"c{i}", traceparent), r.text
    # No id from the client: a generated one (for a routed request, the one the deployment would have got); a
    # malformed traceparent is not echoed.
    for headers in ({"azureml-model-deployment": "dave"}, {}):
        r = client.post(router.url + "/score", content=b"{}", headers={**headers, "traceparent": "00-zz"})
        rid = r.headers["x-request-id"]
        shape = (len(rid), rid.count("-"), r.headers["x-ms-request-id"], "traceparent" in r.headers)
        assert shape == (36, 4, rid, False)
    assert all(up.seen == [] for up in upstreams.values())
    # The router's log line about the 502 names the request, its trace and the deployment.
    lines = [json.loads(line) for line in Path(router.log.name).read_text().splitlines() if line.strip()]
    unreachable = [line for line in lines if line["message"].startswith("deployment bob unreachable")]
    assert [(line["level"], line["request_id"], line["trace_id"], line["deployment"]) for line in unreachable] == [
        ("warning", "c2", "0af7651916cd43dd8448eb211c80319c", "bob"),
        ("warning", rid, None, "bob"),  # the last 502: a generated id, a malformed traceparent (no trace)
    ]


def test_sighup_reloads_traffic_without_restart(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    assert _count(client, router.url, n=50) == {"alice": 50}
    router.reload(router_config(upstreams, {"bob": 100}))
    assert _count(client, router.url, n=50) == {"bob": 50}
    # A broken file is refused; the last good rules stay.
    router.config_path.write_text("{not json")
    router.proc.send_signal(1)
    time.sleep(0.3)
    assert _count(client, router.url, n=20) == {"bob": 20}
    assert router.proc.poll() is None


def test_router_pools_upstream_connections(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    for _ in range(50):
        assert client.post(router.url + "/score", json={"n": 1}).status_code == 200
    # 50 sequential POSTs ride on one or two kept-alive upstream connections, not 50.
    assert len({s["client_port"] for s in upstreams["alice"].seen}) <= 2


def test_slow_deployment_is_504_after_its_timeout(upstreams, start_router, client):
    upstreams["alice"].mode = "slow"
    upstreams["alice"].delay = 3.0
    config = router_config(upstreams, {"alice": 100})
    config["timeouts_s"]["alice"] = 0.5
    router = start_router(config)
    start = time.perf_counter()
    r = client.post(router.url + "/score", json={})
    assert (r.status_code, r.json()) == (504, {"error": "deployment 'alice' did not answer within 0.5 s"})
    assert time.perf_counter() - start < 2.0


def test_head_and_get_pass_through(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    r = client.head(router.url + "/")
    assert r.status_code == 200 and r.content == b""
    r = client.get(router.url + "/swagger.json?version=3")
    assert r.status_code == 200 and r.json() == {"deployment": "alice", "body_bytes": 0}
    seen = upstreams["alice"].seen
    assert [(s["method"], s["path"], s["query"]) for s in seen] == [
        ("HEAD", "/", ""),
        ("GET", "/swagger.json", "version=3"),
    ]
    assert "transfer-encoding" not in dict(seen[1]["headers"])  # no body invented for a GET


def test_restarted_deployment_behind_pooled_connections_is_retried(upstreams, start_router, client):
    router = start_router(router_config(upstreams, {"alice": 100}))
    for _ in range(3):
        assert client.post(router.url + "/score", json={}).status_code == 200
    # The deployment restarts on the same port: the router's pooled connections are now closed by the peer.
    alice = upstreams["alice"]
    port = alice.port
    alice.stop()
    restarted = Upstream("alice")
    restarted.start_on(port)
    try:
        for _ in range(5):
            r = client.post(router.url + "/score", json={"again": True})
            assert r.status_code == 200, r.text
        assert len(restarted.seen) == 5
    finally:
        restarted.stop()


def test_chunked_response_streams_through_and_connection_is_reused(upstreams, start_router, client):
    upstreams["alice"].mode = "chunked"
    router = start_router(router_config(upstreams, {"alice": 100}))
    for _ in range(5):
        r = client.post(router.url + "/score", json={})
        assert (r.status_code, r.text) == (200, "first,second,third")
        assert r.headers["azureml-model-deployment"] == "alice"
    assert len({s["client_port"] for s in upstreams["alice"].seen}) == 1
