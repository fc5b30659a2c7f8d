"""Prometheus' HTTP API, as the project reads it: ``endpoints rollout --stack`` (instant queries of the serving
processes' counters) and the studio's Metrics tab over a stack (range queries). The PromQL itself lives with the
monitoring objects (:mod:`components.builders.monitoring`), one home for the dashboard, the alerts, the rollout's
guard and the studio's charts.
"""

from __future__ import annotations

import math
from typing import Any

import httpx


class PrometheusError(Exception):
    """Prometheus did not answer, or refused the query (the message names the URL or the query)."""


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
