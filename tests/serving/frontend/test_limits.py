"""Timeouts (408), admission (429 + Retry-After) and body limits (413, gzip bombs) over real sockets."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import resource
import time
import zlib

import httpx
import pytest


def _timed(client: httpx.Client, url: str, **kw) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    r = client.post(url, **kw)
    return r, time.perf_counter() - t0


@pytest.mark.parametrize("mode", [pytest.param("sleep", id="async-run"), pytest.param("block", id="sync-run-thread")])
def test_timeout_answers_408_on_time_and_frees_the_slot(served, client, mode):
    with served(request_timeout_ms=400, max_concurrent_requests=1, max_queue_wait_ms=0) as s:
        r, took = _timed(client, s.url + "/score", json={mode: 5})
        assert r.status_code == 408
        assert r.json() == {"error": "request timed out after 400 ms"}
        assert r.headers["x-request-id"]
        # Not before the deadline, and not when run() ends (5 s): the bound tells the two apart, not a speed.
        assert 0.4 <= took < 4, took
        # The only slot is free again at once: with no queueing allowed, a busy slot would answer 429.
        r = client.post(s.url + "/score", json={})
        assert r.status_code == 200, r.text


def test_timeout_counts_from_arrival_including_the_queue(served):
    async def main(url: str):
        async with httpx.AsyncClient(timeout=10) as c:
            first = asyncio.create_task(c.post(url, json={"sleep": 0.5}))
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            second = await c.post(url, json={"sleep": 0.5})
            took = time.perf_counter() - t0
            return (await first), second, took

    # Queue wait (2 s) is longer than the timeout (700 ms): the wait ends with the deadline, as 408.
    with served(request_timeout_ms=700, max_concurrent_requests=1, max_queue_wait_ms=2000) as s:
        first, second, took = asyncio.run(main(s.url + "/score"))
        assert first.status_code == 200
        # Counted from its start (after 0.5 s in the queue) it would have run to its end (200); counted from its
        # arrival, the deadline falls while it runs: 408, not before 700 ms and long before the 2 s queue wait.
        assert second.status_code == 408
        assert 0.65 - 0.05 <= took < 2, took


def test_overload_answers_429_with_retry_after_within_100ms(served):
    limit = 2

    async def main(url: str):
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=50)) as c:
            running = [asyncio.create_task(c.post(url, json={"sleep": 4})) for _ in range(limit)]
            await asyncio.sleep(0.2)
            waiting = [asyncio.create_task(c.post(url, json={"sleep": 0.1})) for _ in range(limit)]
            await asyncio.sleep(0.2)
            rejected = await c.post(url, json={})
            rejected_while_running = not any(t.done() for t in running)
            waiting_done = [t.done() for t in waiting]
            waited = await asyncio.gather(*waiting)
            waited_while_running = not any(t.done() for t in running)
            return (
                await asyncio.gather(*running),
                waited,
                rejected,
                rejected_while_running,
                waiting_done,
                waited_while_running,
            )

    with served(request_timeout_ms=5000, max_concurrent_requests=limit, max_queue_wait_ms=600) as s:
        running, waited, rejected, rejected_early, waiting_done, waited_early = asyncio.run(main(s.url + "/score"))
        assert [r.status_code for r in running] == [200, 200]
        # Queue full (limit waiting: 2 x limit pending, as Azure): rejected without waiting for a slot, i.e. while
        # both running calls (4 s each) and both waiters are still pending.
        assert rejected.status_code == 429
        assert rejected.headers["retry-after"] == "1"
        assert rejected.json() == {"error": "too many requests: 2 running and 2 waiting; retry later"}
        assert rejected_early and waiting_done == [False, False]
        # The waiters gave up after max_queue_wait_ms (600 ms): 429, never 5xx, and before a slot freed up.
        assert [r.status_code for r in waited] == [429] * 2
        assert all(r.headers["retry-after"] == "1" for r in waited)
        assert waited_early


def test_waiters_are_served_in_order_when_slots_free_up(served):
    async def main(url: str):
        async with httpx.AsyncClient(timeout=10) as c:
            first = [asyncio.create_task(c.post(url, json={"sleep": 0.3})) for _ in range(2)]
            await asyncio.sleep(0.05)
            # Two running and two waiting: 2 x limit pending, the most admission holds (as Azure).
            rest = [asyncio.create_task(c.post(url, json={"sleep": 0.05})) for _ in range(2)]
            return await asyncio.gather(*first, *rest)

    with served(max_concurrent_requests=2, max_queue_wait_ms=2000) as s:
        assert [r.status_code for r in asyncio.run(main(s.url + "/score"))] == [200, 200, 200, 200]
        text = httpx.get(s.url + "/metrics").text
        assert 'endpoints_requests_total{route="/score",status="200"} 4.0' in text


def test_user_error_424_passes_through(served, client):
    with served() as s:
        r = client.post(s.url + "/score", json={"fail": True})
        assert (r.status_code, r.json()) == (424, {"error": "run() failed"})


# --- body limits ------------------------------------------------------------------------------------------------

LIMIT = 1 << 20  # 1 MiB


def test_body_under_the_limit_reaches_the_app_whole(served, client):
    body = os.urandom(LIMIT)
    with served(max_body_bytes=LIMIT) as s:
        r = client.post(s.url + "/score", content=body, headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_declared_length_over_the_limit_is_413_before_reading(served, client):
    with served(max_body_bytes=LIMIT) as s:
        r = client.post(s.url + "/score", content=b"x" * (LIMIT + 1))
        assert r.status_code == 413
        assert r.json() == {"error": f"request body is {LIMIT + 1} bytes; the limit is {LIMIT}"}


def test_chunked_body_over_the_limit_is_413_while_streaming(served, client):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(64):  # up to 4 MiB, stops early when the server answers
            sent += 65536
            yield b"y" * 65536

    with served(max_body_bytes=LIMIT) as s:
        try:
            r = client.post(s.url + "/score", content=chunks())
        except httpx.HTTPError:
            pytest.fail("the server must answer 413, not reset the connection before answering")
        assert r.status_code == 413
        assert r.json() == {"error": f"request body is over the limit of {LIMIT} bytes"}


def _rss_peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        pytest.param("gzip", lambda data: gzip.compress(data, 9), id="gzip"),
        pytest.param("deflate", lambda data: zlib.compress(data, 9), id="deflate"),
    ],
)
def test_compressed_bomb_is_413_without_memory_growth(served, client, encoding, compress):
    # 512 MiB of zeros in ~0.5 MB: expanding it in memory would add 512 MiB to the peak RSS.
    bomb = compress(b"\0" * (64 << 20)) * 8 if encoding == "gzip" else compress(b"\0" * (512 << 20))
    with served(max_body_bytes=LIMIT, request_timeout_ms=20000) as s:
        before = _rss_peak_kib()
        r = client.post(s.url + "/score", content=bomb, headers={"content-encoding": encoding})
        grew_mib = (_rss_peak_kib() - before) / 1024
        assert r.status_code == 413
        assert r.json() == {"error": f"request body is over the limit of {LIMIT} bytes"}
        assert grew_mib < 32, f"peak RSS grew {grew_mib:.0f} MiB while rejecting a compressed bomb"


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "deflate-raw"])
def test_compressed_body_under_the_limit_is_decoded_for_the_app(served, client, encoding):
    body = os.urandom(1000) * 300  # 300 kB, compressible
    if encoding == "deflate-raw":
        c = zlib.compressobj(wbits=-15)
        data, header = c.compress(body) + c.flush(), "deflate"
    elif encoding == "deflate":
        data, header = zlib.compress(body), "deflate"
    else:
        data, header = gzip.compress(body), encoding
    with served(max_body_bytes=LIMIT) as s:
        r = client.post(s.url + "/score", content=data, headers={"content-encoding": header})
        assert r.status_code == 200, r.text
        assert r.json()["length"] == len(body)
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_bad_and_unsupported_encodings(served, client):
    with served(max_body_bytes=LIMIT) as s:
        r = client.post(s.url + "/score", content=b"definitely not gzip", headers={"content-encoding": "gzip"})
        assert (r.status_code, r.json()) == (400, {"error": "request body is not valid gzip data"})
        r = client.post(
            s.url + "/score", content=gzip.compress(b"{}" * 1000)[:-12], headers={"content-encoding": "gzip"}
        )
        assert (r.status_code, r.json()) == (400, {"error": "request body is truncated gzip data"})
        r = client.post(s.url + "/score", content=b"{}", headers={"content-encoding": "br"})
        assert (r.status_code, r.json()) == (
            415,
            {"error": "unsupported Content-Encoding 'br'; use gzip, deflate or identity"},
        )


def test_multi_member_gzip_is_decoded_whole(served, client):
    parts = [os.urandom(500) * 20, b"second member", os.urandom(100) * 50]
    with served(max_body_bytes=LIMIT) as s:
        r = client.post(
            s.url + "/score", content=b"".join(gzip.compress(p) for p in parts), headers={"content-encoding": "gzip"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
        r = client.post(
            s.url + "/score", content=gzip.compress(b"{}") + b"trailing garbage", headers={"content-encoding": "gzip"}
        )
        assert (r.status_code, r.json()) == (400, {"error": "request body is not valid gzip data"})
        r = client.post(
            s.url + "/score", content=zlib.compress(b"{}") + b"trailing", headers={"content-encoding": "deflate"}
        )
        assert (r.status_code, r.json()) == (
            400,
            {"error": "request body has data after the end of the deflate stream"},
        )
