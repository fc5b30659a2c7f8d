"""The project's PromQL, in one place: the serving processes' scoring metrics as Prometheus holds them for a stack.

The Prometheus Operator scrapes the serving pods through the stack's PodMonitor
(``components.builders.monitoring.pod_monitor``): ``endpoint`` and ``deployment`` come from the pod labels,
``namespace`` from the pod's namespace (the operator's own relabelling). Every query here selects all three of a
stack's endpoint (:func:`score_selector`), so a same-named endpoint of another stack scraped by the same Prometheus
is never counted. Two readers use them: ``endpoints rollout --stack`` (instant queries of the cumulative counters,
:func:`guard_queries`) and the studio's Metrics tab over a stack (range queries of rates and latency quantiles,
:func:`chart_queries`, and :func:`endpoint_rps_query` for the endpoints list), both through :class:`Prometheus`.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

SCORE_ROUTE = "/score"
REQUESTS = "endpoints_requests"  # counter: endpoints_requests_total{route, status, ...}
LATENCY = "endpoints_request_duration_seconds"  # histogram: ..._bucket{route, le, ...}
RATE_WINDOW = "1m"  # rate() over at least four scrapes at the operator's default 15 s interval


class PrometheusError(Exception):
    """Prometheus did not answer, or refused the query (the message names the URL or the query)."""


def score_selector(namespace: str, endpoint: str | None = None) -> str:
    """Label matchers of the scoring requests of one stack's namespace (and one endpoint of it)."""
    endpoint_part = f',endpoint="{endpoint}"' if endpoint is not None else ""
    return f'namespace="{namespace}"{endpoint_part},route="{SCORE_ROUTE}"'


def guard_queries(endpoint: str, namespace: str) -> tuple[str, str]:
    """The rollout's two instant queries: cumulative scoring requests by deployment and status, latency buckets."""
    selector = score_selector(namespace, endpoint)
    return (
        f"sum by (deployment, status) ({REQUESTS}_total{{{selector}}})",
        f"sum by (deployment, le) ({LATENCY}_bucket{{{selector}}})",
    )


def chart_queries(namespace: str, endpoint: str, window: str = RATE_WINDOW) -> dict[str, str]:
    """The studio's chart queries (evaluated over a range): requests/s by deployment and status, and the p50/p99
    latency in seconds by deployment (``histogram_quantile`` of the buckets' rates)."""
    selector = score_selector(namespace, endpoint)
    buckets = f"sum by (deployment, le) (rate({LATENCY}_bucket{{{selector}}}[{window}]))"
    return {
        "by_status": f"sum by (deployment, status) (rate({REQUESTS}_total{{{selector}}}[{window}]))",
        "p50": f"histogram_quantile(0.5, {buckets})",
        "p99": f"histogram_quantile(0.99, {buckets})",
    }


def endpoint_rps_query(namespace: str, window: str = RATE_WINDOW) -> str:
    """Requests/s of every endpoint of a stack's namespace, by endpoint (an instant query)."""
    return f"sum by (endpoint) (rate({REQUESTS}_total{{{score_selector(namespace)}}}[{window}]))"


def sample_value(raw: Any) -> float | None:
    """A sample's value as Prometheus writes it (a string; ``NaN`` where a quantile has no requests), or None."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


class Prometheus:
    """Prometheus' HTTP API (``/api/v1/query``, ``/api/v1/query_range``).

    Args:
        url: Base URL (``http://prometheus.monitoring:9090``, or a ``kubectl port-forward``'s).
        timeout: Seconds per request (default 10).
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as e:
            raise PrometheusError(f"prometheus {self.url}: {type(e).__name__}: {e}") from e
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code >= 400 or body.get("status") != "success":
            raise PrometheusError(
                f"prometheus {self.url}: HTTP {response.status_code}: {params['query']}: {body.get('error')}"
            )
        return list(body["data"]["result"])

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}]``).

        Raises:
            PrometheusError: no answer, or an error answer (naming the query).
        """
        return self._get("/api/v1/query", {"query": promql})

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query's result matrix (``[{"metric": {...}, "values": [[t, "v"], ...]}]``).

        Raises:
            PrometheusError: no answer, or an error answer (naming the query).
        """
        return self._get("/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})
