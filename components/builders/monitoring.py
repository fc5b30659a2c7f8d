"""Monitoring objects of an online endpoint (pure): a PodMonitor, a PrometheusRule with SLO alerts, a Grafana
dashboard as a ConfigMap for Grafana's sidecar.

The serving processes expose ``endpoints_*`` metrics on ``GET /metrics`` (port ``http``); the PodMonitor adds the
``endpoint`` and ``deployment`` labels from the pods' labels at scrape time, so every query here selects by them.
The PromQL lives in one place (:func:`queries`, :func:`alert_rules`, :func:`guard_queries`,
:func:`endpoint_rates_query`): the dashboard, the alerts, ``endpoints rollout --stack``'s guard, the studio's charts
over a stack and the tests that run them against a real Prometheus use the same text. ``window`` is the rate window
(``5m`` in a cluster; a test scraping every second may use ``30s``).
"""

from __future__ import annotations

import json
from typing import Any

from components.builders.common import DEPLOYMENT_LABEL, ENDPOINT_LABEL, endpoint_labels, metadata

MONITORING_API = "monitoring.coreos.com/v1"
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"  # the label Grafana's dashboard sidecar watches (kube-prometheus-stack)
SCORE = 'route="/score"'
FAILED = 'status=~"5..|424"'  # server errors and model errors (424: run() raised)
OVERLOADED = 'reason="overloaded"'


def _pod_label(label: str) -> str:
    """Prometheus's meta label for a pod label (every character outside [a-zA-Z0-9_] becomes ``_``)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() or c == "_" else "_" for c in label)


def _selector(endpoint: str, namespace: str | None, *more: str) -> str:
    scope = [f'endpoint="{endpoint}"'] + ([f'namespace="{namespace}"'] if namespace else [])
    return "{" + ",".join([*scope, *more]) + "}"


def queries(endpoint: str, window: str = "5m", namespace: str | None = None) -> dict[str, str]:
    """Dashboard panel title -> PromQL, per deployment of ``endpoint`` (of ``namespace``, when given: a Prometheus
    that scrapes several stacks holds a same-named endpoint once per namespace)."""

    def _sel(*more: str) -> str:
        return _selector(endpoint, namespace, *more)

    requests = f"endpoints_requests_total{_sel(SCORE)}"
    return {
        "Requests/s by status class": (
            f'sum by (deployment, status_class) (label_replace(rate({requests}[{window}]), "status_class", "${{1}}xx",'
            ' "status", "(.).."))'
        ),
        "Failed share (5xx + model errors)": (
            f"sum by (deployment) (rate(endpoints_requests_total{_sel(SCORE, FAILED)}[{window}]))"
            f" / sum by (deployment) (rate({requests}[{window}]))"
        ),
        "Latency p99 (s)": (
            "histogram_quantile(0.99, sum by (deployment, le) (rate(endpoints_request_duration_seconds_bucket"
            f"{_sel(SCORE)}[{window}])))"
        ),
        "Latency p50 (s)": (
            "histogram_quantile(0.5, sum by (deployment, le) (rate(endpoints_request_duration_seconds_bucket"
            f"{_sel(SCORE)}[{window}])))"
        ),
        "In flight": f"sum by (deployment) (endpoints_requests_in_flight{_sel()})",
        "Queued": f"sum by (deployment) (endpoints_requests_queued{_sel()})",
        "Answered by the serving layer, by reason": (
            f"sum by (deployment, reason) (rate(endpoints_requests_rejected_total{_sel()}[{window}]))"
        ),
    }


def guard_queries(endpoint: str, namespace: str) -> tuple[str, str]:
    """The rollout's two instant queries (``endpoints rollout --stack``): cumulative scoring requests by deployment
    and status, and the cumulative latency buckets by deployment."""
    selector = f'namespace="{namespace}",endpoint="{endpoint}",{SCORE}'
    return (
        f"sum by (deployment, status) (endpoints_requests_total{{{selector}}})",
        f"sum by (deployment, le) (endpoints_request_duration_seconds_bucket{{{selector}}})",
    )


def endpoint_rates_query(namespace: str, window: str = "5m") -> str:
    """Scoring requests/s of every endpoint of a stack's namespace, by endpoint (the studio's endpoints list)."""
    return f'sum by (endpoint) (rate(endpoints_requests_total{{namespace="{namespace}",{SCORE}}}[{window}]))'


def alert_rules(
    endpoint: str,
    *,
    max_failed_ratio: float = 0.05,
    max_p99_seconds: float = 1.0,
    window: str = "5m",
    for_: str = "5m",
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """SLO alerts of ``endpoint`` (of ``namespace``, when given): failed share, p99 latency, saturation (queueing or
    overload rejections)."""
    q = queries(endpoint, window, namespace)
    labels = {"severity": "warning", "endpoint": endpoint}
    return [
        {
            "alert": "EndpointFailedRequestsHigh",
            "expr": f"({q['Failed share (5xx + model errors)']}) > {max_failed_ratio:g}",
            "for": for_,
            "labels": {**labels, "severity": "critical"},
            "annotations": {
                "summary": (
                    f"{endpoint}/{{{{ $labels.deployment }}}}: more than {max_failed_ratio:.0%} of requests fail"
                ),
                "description": "Failed share (5xx and 424 model errors) over the last " + window + ": {{ $value }}.",
            },
        },
        {
            "alert": "EndpointLatencyP99High",
            "expr": f"({q['Latency p99 (s)']}) > {max_p99_seconds:g}",
            "for": for_,
            "labels": labels,
            "annotations": {
                "summary": f"{endpoint}/{{{{ $labels.deployment }}}}: p99 latency above {max_p99_seconds:g} s",
                "description": "p99 over the last " + window + ": {{ $value }} s.",
            },
        },
        {
            "alert": "EndpointSaturated",
            "expr": (
                f"({q['Queued']}) > 0 or sum by (deployment) (rate(endpoints_requests_rejected_total"
                f"{_selector(endpoint, namespace, OVERLOADED)}[{window}])) > 0"
            ),
            "for": for_,
            "labels": labels,
            "annotations": {
                "summary": f"{endpoint}/{{{{ $labels.deployment }}}}: requests queue or are turned away (429)",
                "description": "Add instances or raise max_concurrent_requests_per_instance.",
            },
        },
    ]


def pod_monitor(endpoint: str, namespace: str, interval: str = "15s") -> dict[str, Any]:
    """A PodMonitor scraping every serving pod of ``endpoint`` on its ``http`` port, adding endpoint/deployment."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": metadata(f"{endpoint}-metrics", namespace, endpoint_labels(endpoint)),
        "spec": {
            "selector": {"matchLabels": {ENDPOINT_LABEL: endpoint}},
            "podMetricsEndpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": interval,
                    "relabelings": [
                        {"sourceLabels": [_pod_label(ENDPOINT_LABEL)], "targetLabel": "endpoint", "action": "replace"},
                        {
                            "sourceLabels": [_pod_label(DEPLOYMENT_LABEL)],
                            "targetLabel": "deployment",
                            "action": "replace",
                        },
                    ],
                }
            ],
        },
    }


def prometheus_rule(endpoint: str, namespace: str, **limits: Any) -> dict[str, Any]:
    """A PrometheusRule with :func:`alert_rules`."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": metadata(f"{endpoint}-slo", namespace, endpoint_labels(endpoint)),
        "spec": {
            "groups": [{"name": f"{endpoint}.slo", "rules": alert_rules(endpoint, namespace=namespace, **limits)}]
        },
    }


def dashboard(endpoint: str, window: str = "5m", namespace: str | None = None) -> dict[str, Any]:
    """A Grafana dashboard (JSON model) with one time-series panel per query, legend per deployment."""
    panels = []
    for i, (title, expr) in enumerate(queries(endpoint, window, namespace).items()):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "targets": [{"refId": "A", "expr": expr, "legendFormat": "{{deployment}} {{status_class}}{{reason}}"}],
            }
        )
    return {
        "title": f"Endpoint {endpoint}",
        "uid": f"ml-endpoints-{endpoint}"[:40],
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


def dashboard_config_map(endpoint: str, namespace: str) -> dict[str, Any]:
    """The dashboard in a ConfigMap labelled for Grafana's sidecar (``grafana_dashboard: "1"``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            f"{endpoint}-dashboard", namespace, {**endpoint_labels(endpoint), GRAFANA_DASHBOARD_LABEL: "1"}
        ),
        "data": {f"{endpoint}.json": json.dumps(dashboard(endpoint, namespace=namespace), indent=2, sort_keys=True)},
    }


def monitoring_objects(endpoint: str, namespace: str) -> list[dict[str, Any]]:
    """Everything rendered for one endpoint when the stack's ``monitoring`` setting is on."""
    return [
        pod_monitor(endpoint, namespace),
        prometheus_rule(endpoint, namespace),
        dashboard_config_map(endpoint, namespace),
    ]
