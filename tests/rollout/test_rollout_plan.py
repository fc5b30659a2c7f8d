"""The pure parts of a rollout: options, weights per step, windows of metrics, the judgement."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from endpoints.rollout.plan import Guards, Limit, RolloutError, build_plan, parse_duration, parse_limit, parse_steps
from endpoints.rollout.window import Snapshot, judge, parse_metrics


def test_durations_steps_and_limits():
    assert [parse_duration(t) for t in ("2s", "500ms", "1.5m", "1h", "3")] == [2.0, 0.5, 90.0, 3600.0, 3.0]
    with pytest.raises(RolloutError, match=r"^--bake: got '2 days'; a duration like 30s, 500ms, 2m or 1h$"):
        parse_duration("2 days")
    assert parse_steps("10, 25,50,100") == (10, 25, 50, 100)
    with pytest.raises(RolloutError, match=r"^--steps: got '10,50'; the last step must be 100"):
        parse_steps("10,50")
    with pytest.raises(RolloutError, match=r"^--steps: got 0 in '0,100'; each step is a percentage 1-100$"):
        parse_steps("0,100")
    assert parse_limit("5%", "--max-error-rate", fraction=True) == Limit(0.05)
    assert parse_limit("+0.02", "--max-error-rate", fraction=True) == Limit(0.02, relative=True)
    assert parse_limit("+50", "--max-p99-ms") == Limit(50.0, relative=True)
    with pytest.raises(RolloutError, match=r"^--max-error-rate: got '1.5'; must be 0-1 \(0-100%\)$"):
        parse_limit("1.5", "--max-error-rate", fraction=True)


def test_weights_per_step_keep_the_champions_ratio_and_sum_to_100():
    plan = build_plan("c", ("a", "b", "c", "d"), {"a": 60, "b": 30, "c": 10}, {}, steps=(10, 25, 50, 100), bake_s=1.0)
    assert plan.champions == ("a", "b")
    assert plan.remaining_steps() == (25, 50, 100)  # c already has 10 %
    assert plan.weights_at(25) == {"a": 50, "b": 25, "c": 25, "d": 0}
    assert plan.weights_at(50) == {"a": 33, "b": 17, "c": 50, "d": 0}
    assert plan.weights_at(100) == {"a": 0, "b": 0, "c": 100, "d": 0}
    with pytest.raises(RolloutError, match=r"^endpoint: traffic: got \{'c': 100\}; a rollout needs another"):
        build_plan("c", ("a", "c"), {"c": 100}, {}, steps=(100,), bake_s=1.0)
    with pytest.raises(RolloutError, match=r"^endpoint: no deployment named 'x' \(deployments: a, c\)$"):
        build_plan("x", ("a", "c"), {"a": 100}, {}, steps=(100,), bake_s=1.0)


def _exposition(ok: int, failed: int, latencies: list[float]) -> str:
    registry = CollectorRegistry()
    requests = Counter("endpoints_requests", "", ["route", "status"], registry=registry)
    latency = Histogram(
        "endpoints_request_duration_seconds", "", ["route"], registry=registry, buckets=(0.01, 0.1, 1.0)
    )
    requests.labels("/score", "200").inc(ok)
    requests.labels("/score", "500").inc(failed - failed // 2)
    requests.labels("/score", "424").inc(failed // 2)  # model errors count as failures too
    requests.labels("/score", "429").inc(0)
    requests.labels("/ready", "200").inc(1000)  # readiness polls are not scoring requests
    for s in latencies:
        latency.labels("/score").observe(s)
    latency.labels("/ready").observe(5.0)
    return generate_latest(registry).decode()


def test_windows_and_quantiles_from_a_real_exposition():
    before = parse_metrics(_exposition(10, 0, [0.005] * 10))
    after = parse_metrics(_exposition(108, 2, [0.005] * 10 + [0.05] * 99 + [0.5]))
    window = after - before
    assert (window.requests, window.errors, window.error_rate) == (100, 2, 0.02)
    assert window.buckets == {0.01: 0, 0.1: 99, 1.0: 100, math.inf: 100}
    # rank 99 of 100 falls at the top of the (0.01, 0.1] bucket, as histogram_quantile interpolates.
    assert window.quantile_ms() == pytest.approx(100.0)
    assert window.quantile_ms(0.5) == pytest.approx(10 + 90 * 50 / 99)
    restarted = parse_metrics(_exposition(3, 0, [0.005] * 3))
    assert (restarted - after).requests == 3  # a counter reset counts from zero


def test_judgement():
    guards = Guards(max_error_rate=Limit(0.05), max_p99_ms=Limit(50.0, relative=True), min_requests=10)
    champion = Snapshot(100, 1, {0.01: 90, 0.1: 100, math.inf: 100})
    few = Snapshot(5, 5, {0.01: 5, math.inf: 5})
    assert judge(few, champion, guards, final=False) is None
    assert judge(few, champion, guards, final=True) == (
        "challenger answered 5 requests during the bake, fewer than --min-requests 10: not enough traffic to judge it"
    )
    failing = Snapshot(40, 3, {0.01: 40, math.inf: 40})
    assert judge(failing, champion, guards, final=False) == (
        "error rate 7.5% (3/40) is above --max-error-rate 0.05 = 5.0%"
    )
    slow = Snapshot(40, 0, {0.01: 0, 0.1: 0, 1.0: 40, math.inf: 40})
    reason = judge(slow, champion, guards, final=False)
    assert reason is not None and reason.startswith("p99 latency 991 ms is above --max-p99-ms champion + 50 = ")
    good = Snapshot(40, 0, {0.01: 39, 0.1: 40, math.inf: 40})
    assert judge(good, champion, guards, final=True) is None
    assert judge(Snapshot(reachable=False), champion, guards, final=False) == (
        "challenger is not reachable (its /metrics did not answer)"
    )
