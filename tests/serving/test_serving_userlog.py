"""serving.userlog.UserOutput on its own: lines, ids, unfinished lines, odd text and targets."""

from __future__ import annotations

import io
import json
import threading

from serving.requestid import current_request_id
from serving.userlog import UserOutput


def _target(encoding: str = "utf-8") -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, write_through=True)


def _records(target: io.TextIOWrapper) -> list[dict]:
    target.flush()
    raw = target.buffer.getvalue()  # type: ignore[attr-defined]
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def test_lines_carry_the_request_id_of_the_writer_and_unfinished_lines_wait():
    target = _target()
    out = UserOutput(target)
    print("outside", file=out)
    token = current_request_id.set(b"req-a")
    try:
        print("a1", "a2", file=out)
        out.write("half")  # no newline yet: held
        assert [r["message"] for r in _records(target)] == ["outside", "a1 a2"]
        out.write(" done\nnext")
    finally:
        current_request_id.reset(token)
    records = _records(target)
    assert [(r["message"], r["request_id"]) for r in records] == [
        ("outside", None),
        ("a1 a2", "req-a"),
        ("half done", "req-a"),
    ]
    # The same thread now prints for request b: a's unfinished "next" goes out under a's id, not glued to b's.
    token = current_request_id.set(b"req-b")
    try:
        print("b1", file=out)
    finally:
        current_request_id.reset(token)
    assert [(r["message"], r["request_id"]) for r in _records(target)[3:]] == [("next", "req-a"), ("b1", "req-b")]
    fields = ["time", "level", "logger", "endpoint", "deployment", "request_id", "trace_id", "message"]
    assert all(list(r) == fields for r in _records(target))


def test_flush_all_writes_every_threads_unfinished_line_and_flush_only_its_own():
    target = _target()
    out = UserOutput(target)
    worker = threading.Thread(target=lambda: out.write("from the worker"))
    worker.start()
    worker.join()
    out.write("from main")
    out.flush()  # this thread's only
    assert [r["message"] for r in _records(target)] == ["from main"]
    out.flush_all()
    assert [r["message"] for r in _records(target)] == ["from main", "from the worker"]


def test_never_raises_on_odd_text_and_writes_utf8_whatever_the_target_encoding():
    target = _target("ascii")
    out = UserOutput(target)
    out.reconfigure(line_buffering=True, encoding="utf-8")  # scripts do this; accepted
    undecodable = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")  # a lone surrogate, as os.listdir gives
    assert out.write(f"file {undecodable}\n") == len(f"file {undecodable}\n")
    print("naïve ✓", file=out)
    messages = [r["message"] for r in _records(target)]
    assert messages == ["file caf\\udce9.jpg", "naïve ✓"]
    assert out.encoding == "ascii" and out.writable() and not out.isatty() and out.line_buffering


def test_close_writes_what_is_left_and_then_refuses_writes():
    target = _target()
    out = UserOutput(target)
    out.write("last words")
    out.close()
    assert [r["message"] for r in _records(target)] == ["last words"]
    try:
        out.write("more")
    except ValueError as e:
        assert "closed" in str(e)
    else:
        raise AssertionError("write after close did not fail")
