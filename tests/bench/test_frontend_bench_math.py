"""bench/frontend/run.py: the wrk parser, the CPU reading and the on/off ratios the issue-4 verdict rests on."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "bench" / "frontend" / "run.py"

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:40123/score
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    34.87ms   12.02ms 124.25ms   70.12%
    Req/Sec     1.70k   120.33     1.95k    71.00%
  Latency Distribution
     50%   34.87ms
     75%   40.11ms
     90%   52.00ms
     99%  124.25ms
  5070 requests in 3.00s, 1.02MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   1690.00
Transfer/sec:    347.94KB
"""


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_frontend_run", RUN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_parse_wrk_reads_rate_latency_failures_and_cpu_per_request(bench):
    r = bench.parse_wrk(WRK_OUTPUT, cpu_s=1.0)
    assert r.rps == 1690.0
    assert (r.p50_ms, r.p99_ms) == (34.87, 124.25)
    assert (r.non_2xx, r.errors) == (3, 3)
    assert r.cpu_us == pytest.approx(1e6 / 5070)


def test_cpu_seconds_reads_this_process(bench):
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("no /proc here")
    before = bench.cpu_seconds(os.getpid())
    total = 0
    for i in range(3_000_000):  # burn some CPU: the reading must move
        total += i
    assert bench.cpu_seconds(os.getpid()) > before
    assert bench.cpu_seconds(2**22 + 7) == 0.0  # no such process: 0, not an error


def test_comparison_takes_the_median_of_per_round_ratios(bench):
    def result(rps: float, cpu_us: float):
        return bench.Result(rps, 1.0, 2.0, 0, 0, cpu_us)

    # Round speeds swing (1000, 500, 2000 req/s); within the rounds "on" is 10 %, 2 % and 2 % slower. The median of
    # the per-round ratios is 98 %; the ratio of the medians (900 / 1000) would say 90 %.
    off = [result(1000, 100), result(500, 200), result(2000, 50)]
    on = [result(900, 110), result(490, 204), result(1960, 51)]
    c = bench.Comparison(off, on)
    assert c.rps_ratio == pytest.approx(0.98)
    assert c.cpu_ratio == pytest.approx(1.02)
    row = c.row("x")
    assert "**98.0%**" in row and "**1.02x**" in row
