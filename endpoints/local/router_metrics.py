"""Prometheus metrics of the local router (prometheus-client), served on their own loopback port.

The router's hot path only bumps plain Python numbers (a dict entry and a histogram bucket per request, no lock,
no prometheus-client call); a custom collector turns them into metric families when ``/metrics`` is scraped, so a
scrape is exact. The exposition is served by prometheus-client's own HTTP server (``start_http_server``, a daemon
thread) on a port of its own: the endpoint's port stays a pure proxy, where ``GET /metrics`` (pinned or not)
reaches a deployment's metrics as it does through the cluster's Gateway. Like the serving layer's ``/metrics``, it
asks for no credentials (it carries no payloads or keys) and listens on 127.0.0.1 only.

Names follow the serving layer's (``serving.frontend.metrics``): ``endpoints_`` prefix, ``_total`` counters,
seconds, the same latency buckets; label values come from fixed sets or the endpoint's own deployment names, so
clients cannot grow the series count (an unknown pin is counted with an empty ``deployment``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from serving.frontend.metrics import LATENCY_BUCKETS

# How a request was routed: by the weight split, by the azureml-model-deployment header, or not at all (the router
# answered a request it could not parse or that timed out before its head was whole).
ROUTED_BY = ("weight", "pin", "none")
_BOUNDS_TEXT = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]  # as prometheus-client writes them


class RouterMetrics:
    """The router's counts, kept as plain numbers and collected into metric families at scrape time.

    Args:
        mirror_in_flight: Returns the number of mirror copies in flight (read at scrape time).
    """

    def __init__(self, mirror_in_flight: Callable[[], int] = lambda: 0) -> None:
        self.requests: dict[tuple[str, int, str], int] = {}  # (deployment, status, routed_by) -> answered requests
        self.latency: dict[str, list[float]] = {}  # deployment -> bucket counts (last: +Inf), then the sum
        self.mirror_sent: dict[str, int] = {}
        self.mirror_dropped: dict[str, int] = {}
        self.mirror_failed: dict[str, int] = {}
        self.mirror_in_flight = mirror_in_flight
        self.registry = CollectorRegistry()
        self.registry.register(self)

    # --- hot path (event loop thread)
    def observe(self, deployment: str, status: int, routed_by: str, seconds: float) -> None:
        """Count one answered request and its duration (from its head's arrival to the end of its answer)."""
        key = (deployment, status, routed_by)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        counts = self.latency.get(deployment)
        if counts is None:
            counts = self.latency[deployment] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    @staticmethod
    def bump(counts: dict[str, int], deployment: str) -> None:
        """Add one to a per-deployment mirror count."""
        counts[deployment] = counts.get(deployment, 0) + 1

    # --- scrape (prometheus-client's server thread): copies are taken first, each in one step under the GIL
    def collect(self) -> Iterator[Metric]:
        """Metric families of the counts as they are now."""
        requests = CounterMetricFamily(
            "endpoints_router_requests",
            "Requests the router answered, by deployment (empty: none could answer), status code and how it was "
            "routed (weight: the traffic split, pin: the azureml-model-deployment header, none: not routed).",
            labels=["deployment", "status", "routed_by"],
        )
        for (deployment, status, routed_by), n in sorted(dict(self.requests).items()):
            requests.add_metric([deployment, str(status), routed_by], n)
        yield requests

        latency = HistogramMetricFamily(
            "endpoints_router_request_duration_seconds",
            "Time from a request head's arrival at the router to the end of its answer, by deployment.",
            labels=["deployment"],
        )
        for deployment, live in sorted(dict(self.latency).items()):
            counts = list(live)
            cumulative, buckets = 0.0, []
            for bound, in_bucket in zip(_BOUNDS_TEXT, counts[:-1], strict=True):
                cumulative += in_bucket
                buckets.append((bound, cumulative))
            latency.add_metric([deployment], buckets, counts[-1])
        yield latency

        mirror = CounterMetricFamily(
            "endpoints_router_mirror_requests",
            "Mirror copies the traffic split chose, by target deployment and outcome (sent, or dropped because "
            "the mirror already had its maximum of copies in flight).",
            labels=["deployment", "outcome"],
        )
        for outcome, per_deployment in (("sent", self.mirror_sent), ("dropped", self.mirror_dropped)):
            for deployment, n in sorted(dict(per_deployment).items()):
                mirror.add_metric([deployment, outcome], n)
        yield mirror

        failed = CounterMetricFamily(
            "endpoints_router_mirror_failed",
            "Mirror copies sent that failed, by target deployment: no answer (unreachable, timed out, broke off) "
            "or a 5xx answer. A part of the sent ones.",
            labels=["deployment"],
        )
        for deployment, n in sorted(dict(self.mirror_failed).items()):
            failed.add_metric([deployment], n)
        yield failed

        in_flight = self.mirror_in_flight()
        yield GaugeMetricFamily("endpoints_router_mirror_in_flight", "Mirror copies not yet answered.", value=in_flight)

    def serve(self, host: str, port: int) -> Any:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server (``shutdown()`` stops it).

        Raises:
            OSError: the address cannot be bound.
        """
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
