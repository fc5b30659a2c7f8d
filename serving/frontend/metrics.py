"""Prometheus metrics of the production layer (prometheus-client), multiprocess-safe.

With several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty writable folder *before* the workers
import prometheus-client (prometheus-client picks its value store at import): every worker then writes its
values there and ``GET /metrics`` on any worker aggregates all of them. When a worker exits, the master
should call :func:`mark_process_dead` with its pid so its live gauges stop counting.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Route label values: a fixed set, so that scanners probing random paths cannot grow the series count.
ROUTES = ("/", "/ready", "/metrics", "/score", "/swagger.json")
OTHER_ROUTE = "other"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_dir() -> str | None:
    """The multiprocess folder when multiprocess mode is on, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class FrontendMetrics:
    """The metric objects of one frontend, registered in their own registry (several frontends may coexist)."""

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
            buckets=_LATENCY_BUCKETS,
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
            "(unauthorized, overloaded, timeout, body_too_large, bad_encoding, draining).",
            ["reason"],
            registry=r,
        )
        self.run_duration = Histogram(
            "endpoints_run_duration_seconds",
            "Time /score spent in the scoring app after admission (run() plus input parsing and output encoding).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Label children cached: .labels() costs a dict lookup and a lock per call.
        self._requests_children: dict[tuple[str, int], Counter] = {}
        self._latency_children = {route: self.latency.labels(route) for route in (*ROUTES, OTHER_ROUTE)}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (route, status)
        child = self._requests_children.get(key)
        if child is None:
            child = self._requests_children[key] = self.requests.labels(route, str(status))
        child.inc()
        self._latency_children[route].observe(seconds)

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
