"""The per-request machinery tuned for speed: RunPool batching, the joining transport, cheap request ids."""

from __future__ import annotations

import asyncio
import os
import re
import time

import pytest
import uvloop

import serving.run_pool as run_pool
from serving.requestid import new_request_id
from serving.run_pool import RunPool
from serving.server.transport import JoiningTransport

UUID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _run(coro):
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _square(i: int) -> int:
    if i % 7 == 3:
        raise ValueError(f"bad {i}")
    return i * i


@pytest.mark.parametrize("size", [pytest.param(1, id="one-thread"), pytest.param(4, id="four-threads")])
def test_run_pool_results_and_errors_reach_their_callers(size: int) -> None:
    pool = RunPool(size, "t")

    async def main() -> list[object]:
        futures = [pool.call(_square, {"i": i}) for i in range(50)]
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = _run(main())
    finally:
        pool.close()
    for i, result in enumerate(results):
        if i % 7 == 3:
            assert isinstance(result, ValueError) and str(result) == f"bad {i}"
        else:
            assert result == i * i


def test_run_pool_hands_back_short_calls_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    hand_backs: list[int] = []
    settle = run_pool._settle

    def counting(done: list) -> None:
        hand_backs.append(len(done))
        settle(done)

    monkeypatch.setattr(run_pool, "_settle", counting)
    pool = RunPool(1, "t")

    async def main() -> list[int]:
        # Warm the moving average with short calls, then 64 calls submitted in one pass of the loop.
        for _ in range(20):
            await pool.call(_square, {"i": 0})
        hand_backs.clear()
        return await asyncio.gather(*(pool.call(_square, {"i": 0}) for _ in range(64)))

    try:
        assert _run(main()) == [0] * 64
    finally:
        pool.close()
    assert sum(hand_backs) == 64
    assert len(hand_backs) < 32, hand_backs  # one callback per result would be 64


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_run_pool_never_holds_a_result_behind_slow_calls() -> None:
    pool = RunPool(1, "t")
    finished: dict[str, float] = {}

    async def one(name: str, seconds: float) -> None:
        await pool.call(_sleep, {"seconds": seconds})
        finished[name] = time.perf_counter()

    async def main() -> None:
        await pool.call(_sleep, {"seconds": 0.2})  # the moving average learns that calls are slow
        await asyncio.gather(one("short", 0.0), one("slow", 0.3))  # submitted together, short first

    try:
        _run(main())
    finally:
        pool.close()
    # The short call's result went back when it ended, not together with the slow one's 0.3 s later.
    assert finished["slow"] - finished["short"] >= 0.2, finished


class _RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_joining_transport_sends_head_and_body_in_one_write() -> None:
    async def main() -> tuple[list[bytes], list[bytes], list[bytes]]:
        raw = _RecordingTransport()
        transport = JoiningTransport(raw)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert raw.writes == []  # held until the body
        transport.write(b"body")
        joined = list(raw.writes)
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # nothing follows: out at the end of the pass
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        alone = list(raw.writes)
        transport.write(b"head")
        transport.write(b"x" * 100_000)  # large: not copied into one buffer
        big = list(raw.writes)
        return joined, alone, big

    joined, alone, big = _run(main())
    assert joined == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert alone == [*joined, b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert big == [*alone, b"head", b"x" * 100_000]


def test_joining_transport_close_sends_what_is_held_first() -> None:
    async def main() -> _RecordingTransport:
        raw = _RecordingTransport()
        transport = JoiningTransport(raw)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        transport.close()
        assert transport.get_extra_info("peername") == "info:peername"  # the rest is the real transport's
        return raw

    raw = _run(main())
    assert raw.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    assert raw.closed


def test_request_ids_are_uuid_shaped_unique_and_differ_per_process() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert all(UUID_SHAPE.match(i) for i in ids), ids[:3]
    assert len(set(ids)) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a forked worker draws its own prefix
        os.close(read)
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 100).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert UUID_SHAPE.match(child)
    assert child[:24] != ids[0][:24]


def test_the_head_limits_keep_uvicorns_protocol_on_the_fast_attribute_path() -> None:
    """serving.protocol adds one instance attribute to uvicorn's protocol, so it stays within CPython's shared keys.

    CPython shares an instance dict's keys (and specializes attribute reads on them) only up to 30 keys; uvicorn's
    httptools protocol has 28 after a request. With the head limits' six attributes of their own every protocol
    attribute read took the slow path: about 4 % of a small request's CPU time (bench/frontend/compare_commits.py).
    """
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from serving.server.transport import protocol_class

    class Transport:
        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"sockname": ("127.0.0.1", 5001), "peername": ("127.0.0.1", 40000)}.get(name, default)

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            pass

    async def app(scope: object, receive: object, send: object) -> None:
        pass  # no answer: uvicorn answers 500 through the transport above

    config = Config(app=app, loop="none", lifespan="off", log_config=None)
    config.load()

    async def attributes(cls: type) -> set[str]:
        protocol = cls(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(Transport())
        protocol.data_received(b"GET /?a=1 HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\r\n")  # a whole request: the task starts
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        return set(vars(protocol))

    async def main() -> tuple[set[str], set[str]]:
        return await attributes(HttpToolsProtocol), await attributes(protocol_class(10.0))

    base, limited = _run(main())
    assert limited - base == {"_head"}
