"""Prometheus metrics of the production layer (prometheus-client), multiprocess-safe.

With several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty writable folder *before* the workers
import prometheus-client (prometheus-client picks its value store at import): every worker then writes its
values there and ``GET /metrics`` on any worker aggregates all of them. When a worker exits, the master
should call :func:`mark_process_dead` with its pid so its live gauges stop counting.
"""

from __future__ import annotations

import bisect
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Route label values: a fixed set, so that scanners probing random paths cannot grow the series count.
ROUTES = ("/", "/ready", "/metrics", "/score", "/swagger.json")
OTHER_ROUTE = "other"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_dir() -> str | None:
    """The multiprocess folder when multiprocess mode is on, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _LocalHistogram:
    """Observations kept in plain Python numbers between flushes (no lock, no value-store write per request)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def flush_into(self, child: Any) -> None:
        """Add the pending observations to a prometheus-client Histogram child, then reset."""
        if not any(self.counts):
            return
        # Histogram children keep one non-cumulative value per bucket (``_buckets``) and the sum (``_sum``); this
        # is what ``observe`` updates, done once per bucket instead of once per request.
        child._sum.inc(self.total)
        for i, n in enumerate(self.counts):
            if n:
                child._buckets[i].inc(n)
        self.counts = [0] * len(self.counts)
        self.total = 0.0


class FrontendMetrics:
    """The metric objects of one frontend, registered in their own registry (several frontends may coexist).

    The hot path only bumps plain Python counters; :meth:`flush` moves them into the prometheus-client metrics
    (and, in multiprocess mode, into the shared files). The frontend flushes once a second while serving and
    before every ``/metrics`` answer, so a scrape of this worker is exact and other workers lag at most 1 s.
    """

    def __init__(self) -> None:
        """Create the metrics; in multiprocess mode values go to ``PROMETHEUS_MULTIPROC_DIR``."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "endpoints_requests", "Requests answered, by route and status code.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "endpoints_request_duration_seconds",
            "Time from request arrival to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "endpoints_requests_in_flight",
            "Scoring requests holding an admission slot.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued = Gauge(
            "endpoints_requests_queued",
            "Scoring requests waiting for an admission slot.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "endpoints_requests_rejected",
            "Requests the production layer answered itself, by reason "
            "(unauthorized, overloaded, timeout, body_too_large, bad_encoding, draining, app_error).",
            ["reason"],
            registry=r,
        )
        self.run_duration = Histogram(
            "endpoints_run_duration_seconds",
            "Time /score spent in the scoring app after admission (run() plus input parsing and output encoding).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.collector_written = Counter(
            "endpoints_data_collector_records",
            "Payload-logging lines written (data_collector), by collection.",
            ["collection"],
            registry=r,
        )
        self.collector_dropped = Counter(
            "endpoints_data_collector_dropped",
            "Payload-logging records dropped, by reason (queue_full, write_error, shutdown); requests are unaffected.",
            ["reason"],
            registry=r,
        )
        self._pending_requests: dict[tuple[str, int], int] = {}
        self._pending_rejected: dict[str, int] = {}
        self._pending_latency = {route: _LocalHistogram(LATENCY_BUCKETS) for route in (*ROUTES, OTHER_ROUTE)}
        self._pending_run = _LocalHistogram(LATENCY_BUCKETS)

    def observe_request(self, route: str, status: int, seconds: float, reason: str = "") -> None:
        """Count one answered request, its latency and, when the frontend answered it, why."""
        key = (route, status)
        pending = self._pending_requests
        pending[key] = pending.get(key, 0) + 1
        local = self._pending_latency[route]  # _LocalHistogram.observe, inline (once per request)
        local.counts[bisect.bisect_left(local.bounds, seconds)] += 1
        local.total += seconds
        if reason:
            self._pending_rejected[reason] = self._pending_rejected.get(reason, 0) + 1

    def observe_run(self, seconds: float) -> None:
        """Record one /score run in the app."""
        self._pending_run.observe(seconds)

    def flush(self, in_flight: int, queued: int) -> None:
        """Move pending counts into the prometheus-client metrics and set the gauges."""
        requests, self._pending_requests = self._pending_requests, {}
        for (route, status), n in requests.items():
            self.requests.labels(route, str(status)).inc(n)
        rejected, self._pending_rejected = self._pending_rejected, {}
        for reason, n in rejected.items():
            self.rejected.labels(reason).inc(n)
        for route, local in self._pending_latency.items():
            local.flush_into(self.latency.labels(route))
        self._pending_run.flush_into(self.run_duration)
        self.in_flight.set(in_flight)
        self.queued.set(queued)

    def render(self) -> bytes:
        """The exposition text: this process's registry, or every worker's values in multiprocess mode."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of an exited worker (multiprocess mode; no-op otherwise)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
