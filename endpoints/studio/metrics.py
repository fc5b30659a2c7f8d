"""Metrics of the studio's charts: samples each deployment's Prometheus ``/metrics`` and keeps rates in memory.

Every ``interval_s`` (5 s: each scrape is one access-log line in every deployment's log) the sampler scrapes the
serving processes (``endpoints_requests_total`` by status and ``endpoints_request_duration_seconds`` of ``/score``),
and stores, per deployment, one point with the requests/s by status class (2xx/4xx/5xx) and the p50/p99 latency of
the requests answered since the previous scrape (estimated from the histogram buckets, as Prometheus'
``histogram_quantile`` does). The last ``keep_s`` seconds are kept (default 10 minutes); nothing is written to disk.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

SCORE_ROUTE = "/score"
Target = tuple[str, str]  # (endpoint, deployment)


@dataclass
class Scrape:
    """Cumulative counters of one scrape.

    Attributes:
        at: Monotonic time of the scrape.
        by_class: Requests to /score answered so far by status class ("2xx", "4xx", "5xx", ...).
        buckets: Cumulative latency histogram of /score: (upper bound, count), ascending, ending with +Inf.
    """

    at: float
    by_class: dict[str, float] = field(default_factory=dict)
    buckets: list[tuple[float, float]] = field(default_factory=list)


def parse_scrape(text: str, at: float) -> Scrape:
    """Read the counters the charts need from a Prometheus exposition text."""
    scrape = Scrape(at)
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "endpoints_requests_total" and labels.get("route") == SCORE_ROUTE:
                cls = f"{labels.get('status', '0')[:1]}xx"
                scrape.by_class[cls] = scrape.by_class.get(cls, 0.0) + sample.value
            elif sample.name == "endpoints_request_duration_seconds_bucket" and labels.get("route") == SCORE_ROUTE:
                le = float(labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    scrape.buckets = sorted(buckets.items())
    return scrape


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (linear inside a bucket, as ``histogram_quantile``).

    Returns:
        Seconds, or None when the histogram is empty. Observations in the +Inf bucket give the largest bound.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def point_between(before: Scrape, after: Scrape) -> dict[str, Any]:
    """One chart point from two scrapes: requests/s per status class and p50/p99 in ms over the interval.

    A counter that went down (the deployment restarted) counts from zero.
    """
    seconds = max(after.at - before.at, 1e-6)
    rates = {}
    for cls, value in after.by_class.items():
        previous = before.by_class.get(cls, 0.0)
        rates[cls] = round((value - previous if value >= previous else value) / seconds, 3)
    old = dict(before.buckets)
    delta = [(b, c - old.get(b, 0.0)) for b, c in after.buckets]
    if any(c < 0 for _, c in delta):
        delta = after.buckets
    p50, p99 = quantile(0.5, delta), quantile(0.99, delta)
    return {
        "rps": round(sum(rates.values()), 3),
        "by_class": rates,
        "p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
        "p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
    }


class MetricsSampler:
    """Scrapes targets and keeps recent points per (endpoint, deployment).

    Args:
        targets: Returns the ``/metrics`` URL of every live deployment (the backend's ``metrics_targets``).
        interval_s: Seconds between scrapes (default 5).
        keep_s: Seconds of history kept (default 600).
    """

    def __init__(
        self, targets: Callable[[], dict[Target, str]], interval_s: float = 5.0, keep_s: float = 600.0
    ) -> None:
        self.targets = targets
        self.interval_s = interval_s
        self.keep = max(2, int(keep_s / interval_s))
        self.last: dict[Target, Scrape] = {}
        self.series: dict[Target, deque[dict[str, Any]]] = {}
        self.started = time.time()
        self._client = httpx.Client(timeout=min(interval_s, 2.0))

    def close(self) -> None:
        """Close the HTTP pool."""
        self._client.close()

    def sample(self) -> None:
        """Scrape every target once; a target that does not answer gets no point this time."""
        targets = self.targets()
        for target, url in targets.items():
            try:
                response = self._client.get(url)
                response.raise_for_status()
                scrape = parse_scrape(response.text, time.monotonic())
            except (httpx.HTTPError, ValueError):
                continue
            before = self.last.get(target)
            self.last[target] = scrape
            if before is None:
                continue
            point = {"t": round(time.time(), 3), **point_between(before, scrape)}
            self.series.setdefault(target, deque(maxlen=self.keep)).append(point)
        for gone in [t for t in self.last if t not in targets]:
            del self.last[gone]

    def endpoint_series(self, endpoint: str) -> dict[str, list[dict[str, Any]]]:
        """Points per deployment of one endpoint, oldest first."""
        return {d: list(points) for (e, d), points in self.series.items() if e == endpoint}

    def current_rps(self, endpoint: str) -> float | None:
        """Requests/s of the endpoint's deployments at their latest point (None before two scrapes).

        Mirrored copies count at the deployment that got them, as its own ``/metrics`` counts them.
        """
        fresh = time.time() - 3 * self.interval_s  # a deployment that stopped answering has no current rate
        latest = [p[-1]["rps"] for (e, _), p in self.series.items() if e == endpoint and p and p[-1]["t"] >= fresh]
        return round(sum(latest), 3) if latest else None
