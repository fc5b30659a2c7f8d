"""bench/benchlib.py, shared by the benchmarks: wrk latencies and reports, free ports."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import benchlib


@pytest.mark.parametrize(("text", "ms"), [("850.00us", 0.85), ("3.21ms", 3.21), ("1.02s", 1020.0), ("1.50m", 90000.0)])
def test_wrk_ms_units(text, ms):
    assert benchlib.wrk_ms(text) == pytest.approx(ms)


def test_wrk_ms_and_parse_wrk_name_what_they_could_not_read():
    with pytest.raises(ValueError, match="wrk latency '12parsecs'"):
        benchlib.wrk_ms("12parsecs")
    with pytest.raises(ValueError, match="wrk output has no Requests/sec"):
        benchlib.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_wrk_without_failures_counts_none():
    out = "  Latency Distribution\n     50%  1.00ms\n     99%  2.50ms\n  10 requests in 1.00s, 1KB read\nRequests/sec:     10.00\n"
    report = benchlib.parse_wrk(out)
    assert (report.rps, report.requests, report.p50_ms, report.p99_ms) == (10.0, 10, 1.0, 2.5)
    assert (report.non_2xx, report.errors, report.socket_errors) == (0, 0, "")


def test_free_port_is_bindable():
    port = benchlib.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
