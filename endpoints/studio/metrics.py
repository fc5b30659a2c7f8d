"""Metrics of the studio's charts: samples each deployment's Prometheus ``/metrics`` and keeps rates in memory.

Every ``interval_s`` (5 s: each scrape is one access-log line in every deployment's log) the sampler scrapes the
serving processes (``endpoints_requests_total`` by status and ``endpoints_request_duration_seconds`` of ``/score``),
and stores, per deployment, one point with the requests/s by status class (2xx/4xx/5xx) and the p50/p99 latency of
the requests answered since the previous scrape (estimated from the histogram buckets, as Prometheus'
``histogram_quantile`` does). The last ``keep_s`` seconds are kept (default 10 minutes); nothing is written to disk.

Over a cluster stack the same points come from the cluster's Prometheus instead (:class:`PrometheusCharts`, the
queries of the endpoint's dashboard), or there is no source (:class:`NoCharts`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from components.builders.monitoring import endpoint_rates_query, queries
from endpoints.prometheus import Prometheus, PrometheusError, sample_value

SCORE_ROUTE = "/score"
RATE_WINDOW = "1m"  # the charts' rate() window: four scrapes at the Prometheus Operator's default 15 s interval
CHART_QUERIES = {"rps": "Requests/s by status class", "p50_ms": "Latency p50 (s)", "p99_ms": "Latency p99 (s)"}

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

    source = "studio"

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

    @property
    def note(self) -> str:
        return (
            f"Sampled from each deployment's /metrics every {self.interval_s:g} s by the studio (mirrored copies count "
            "at the deployment that got them)."
        )

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


class PrometheusCharts:
    """The charts' points of a cluster stack, from the cluster's Prometheus (the Metrics tab with ``--stack``).

    The same points as :class:`MetricsSampler` (``t``, ``rps``, ``by_class``, ``p50_ms``, ``p99_ms`` per deployment),
    read as range queries over the last ``keep_s`` seconds, one point per ``interval_s``, of the endpoint's Grafana
    dashboard panels (:func:`components.builders.monitoring.queries`, the one home of the project's PromQL, selecting
    this stack's namespace): requests/s by status class, p50 and p99 latency, with rates over :data:`RATE_WINDOW`.
    Nothing is sampled here; answers are kept ``interval_s`` (the page polls every 2 s).

    Args:
        url: Prometheus base URL.
        namespace: Returns the stack's namespace (read when queried: the stack file may change).
        interval_s: Seconds between points (default 5).
        keep_s: Seconds of history (default 600).
    """

    source = "prometheus"

    def __init__(self, url: str, namespace: Callable[[], str], interval_s: float = 5.0, keep_s: float = 600.0) -> None:
        self.prometheus = Prometheus(url)
        self.namespace = namespace
        self.interval_s = interval_s
        self.keep_s = keep_s
        self._kept: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    @property
    def note(self) -> str:
        return (
            f"From Prometheus at {self.prometheus.url} (namespace {self.namespace()}): rates over {RATE_WINDOW}, "
            f"one point every {self.interval_s:g} s."
        )

    def close(self) -> None:
        """Close the HTTP pool."""
        self.prometheus.close()

    def sample(self) -> None:
        """Nothing to scrape: Prometheus does."""

    def _kept_or(self, key: str, read: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.interval_s:
                return hit[1]
        value = read()
        with self._lock:
            self._kept[key] = (time.monotonic(), value)
        return value

    def endpoint_series(self, endpoint: str) -> dict[str, list[dict[str, Any]]]:
        """Points per deployment of one endpoint, oldest first.

        Raises:
            PrometheusError: Prometheus did not answer or refused a query.
        """
        return self._kept_or(f"series:{endpoint}", lambda: self._series(endpoint))

    def _series(self, endpoint: str) -> dict[str, list[dict[str, Any]]]:
        step = self.interval_s
        end = math.floor(time.time() / step) * step  # aligned: the same instants from one read to the next
        start = end - self.keep_s
        panels = queries(endpoint, RATE_WINDOW, self.namespace())
        points: dict[str, dict[float, dict[str, Any]]] = {}
        for row in self.prometheus.query_range(panels[CHART_QUERIES["rps"]], start, end, step):
            deployment = row["metric"].get("deployment", "")
            cls = row["metric"].get("status_class", "")
            for t, raw in row["values"]:
                value = sample_value(raw)
                if value is None:
                    continue
                point = points.setdefault(deployment, {}).setdefault(
                    float(t), {"t": float(t), "rps": 0.0, "by_class": {}, "p50_ms": None, "p99_ms": None}
                )
                point["by_class"][cls] = point["by_class"].get(cls, 0.0) + value
        for key in ("p50_ms", "p99_ms"):
            for row in self.prometheus.query_range(panels[CHART_QUERIES[key]], start, end, step):
                by_time = points.get(row["metric"].get("deployment", ""), {})
                for t, raw in row["values"]:
                    value = sample_value(raw)
                    if value is not None and float(t) in by_time:
                        by_time[float(t)][key] = round(value * 1000, 3)
        out = {}
        for deployment, by_time in sorted(points.items()):
            series = []
            for t in sorted(by_time):
                point = by_time[t]
                point["by_class"] = {c: round(v, 3) for c, v in sorted(point["by_class"].items())}
                point["rps"] = round(sum(point["by_class"].values()), 3)
                series.append(point)
            out[deployment] = series
        return out

    def current_rps(self, endpoint: str) -> float | None:
        """Requests/s of the endpoint now (rate over the window), None when Prometheus has none or is unreachable."""
        try:
            rates = self._kept_or("rps", self._rates)
        except PrometheusError:
            return None
        value = rates.get(endpoint)
        return round(value, 3) if value is not None else None

    def _rates(self) -> dict[str, float]:
        rows = self.prometheus.query(endpoint_rates_query(self.namespace(), RATE_WINDOW))
        out = {}
        for row in rows:
            value = sample_value(row["value"][1])
            if value is not None:
                out[row["metric"].get("endpoint", "")] = value
        return out


class NoCharts:
    """No metrics source (a cluster stack without ``--prometheus``): empty charts and why."""

    source = None
    interval_s = 5.0

    def __init__(self, note: str) -> None:
        self.note = note

    def close(self) -> None:
        """Nothing held."""

    def sample(self) -> None:
        """Nothing to sample."""

    def endpoint_series(self, endpoint: str) -> dict[str, list[dict[str, Any]]]:
        return {}

    def current_rps(self, endpoint: str) -> float | None:
        return None
