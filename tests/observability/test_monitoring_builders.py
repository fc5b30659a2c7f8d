"""The monitoring builders' objects, structurally and against the Prometheus Operator's CRD schemas (not in the
repository: scripts/toolchain.sh installs them from the operator's Go module into the toolchain's crds/; the tests
that need them skip, naming the command, where they are not installed), and the rule file through `promtool check
rules`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from components import k8s_schema
from components.builders.common import DEPLOYMENT_LABEL, ENDPOINT_LABEL, deployment_labels
from components.builders.monitoring import (
    GRAFANA_DASHBOARD_LABEL,
    alert_rules,
    dashboard_config_map,
    monitoring_objects,
    pod_monitor,
    prometheus_rule,
    queries,
)


def test_pod_monitor_selects_the_serving_pods_and_adds_endpoint_and_deployment_labels():
    pm = pod_monitor("cars", "ml")
    assert (pm["apiVersion"], pm["kind"], pm["metadata"]["name"], pm["metadata"]["namespace"]) == (
        "monitoring.coreos.com/v1",
        "PodMonitor",
        "cars-metrics",
        "ml",
    )
    selector = pm["spec"]["selector"]["matchLabels"]
    # The selector matches the labels the online builder puts on every pod of every deployment of the endpoint.
    assert selector.items() <= deployment_labels("cars", "alice").items()
    assert (ENDPOINT_LABEL, DEPLOYMENT_LABEL) == ("ml-endpoints.io/endpoint", "ml-endpoints.io/deployment")
    (scrape,) = pm["spec"]["podMetricsEndpoints"]
    assert (scrape["port"], scrape["path"]) == ("http", "/metrics")
    assert [(r["sourceLabels"], r["targetLabel"]) for r in scrape["relabelings"]] == [
        # Prometheus's names for the pod labels ml-endpoints.io/endpoint and ml-endpoints.io/deployment.
        (["__meta_kubernetes_pod_label_ml_endpoints_io_endpoint"], "endpoint"),
        (["__meta_kubernetes_pod_label_ml_endpoints_io_deployment"], "deployment"),
    ]


def test_rules_and_dashboard_use_the_same_queries():
    rules = {r["alert"]: r for r in alert_rules("cars", max_failed_ratio=0.02, max_p99_seconds=0.5)}
    assert sorted(rules) == ["EndpointFailedRequestsHigh", "EndpointLatencyP99High", "EndpointSaturated"]
    q = queries("cars")
    assert rules["EndpointFailedRequestsHigh"]["expr"] == f"({q['Failed share (5xx + model errors)']}) > 0.02"
    assert rules["EndpointLatencyP99High"]["expr"] == f"({q['Latency p99 (s)']}) > 0.5"
    q = queries("cars", namespace="ml")  # the cluster's: one stack's endpoint, not a same-named one of another
    assert all('endpoint="cars",namespace="ml"' in expr for expr in q.values())
    cm = dashboard_config_map("cars", "ml")
    assert cm["metadata"]["labels"][GRAFANA_DASHBOARD_LABEL] == "1"
    board = json.loads(cm["data"]["cars.json"])
    assert [(p["title"], p["targets"][0]["expr"]) for p in board["panels"]] == list(q.items())
    assert [o["kind"] for o in monitoring_objects("cars", "ml")] == ["PodMonitor", "PrometheusRule", "ConfigMap"]
    rule = monitoring_objects("cars", "ml")[1]["spec"]["groups"][0]["rules"]
    assert all('namespace="ml"' in r["expr"] for r in rule)


def _needs_toolchain_crds() -> None:
    missing = [
        n
        for n in ("podmonitors", "prometheusrules")
        if not (k8s_schema.toolchain_crd_dir() / f"monitoring.coreos.com_{n}.yaml").is_file()
    ]
    if missing:
        pytest.skip(
            f"no Prometheus Operator CRDs in {k8s_schema.toolchain_crd_dir()} ({k8s_schema.TOOLCHAIN_CRD_COMMAND})"
        )


def test_monitoring_objects_pass_the_prometheus_operator_crd_schemas():
    _needs_toolchain_crds()
    assert k8s_schema.validate_objects(monitoring_objects("cars", "ml")) == []


def test_a_bad_field_or_type_in_a_pod_monitor_or_rule_is_named():
    _needs_toolchain_crds()
    pm = pod_monitor("cars", "ml")
    pm["spec"]["podMetricsEndpoints"][0]["prot"] = "http"
    rule = prometheus_rule("cars", "ml")
    rule["spec"]["groups"][0]["rules"][0]["for"] = 300
    bad_action = copy.deepcopy(pod_monitor("cars", "ml"))
    bad_action["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rename"
    problems = k8s_schema.validate_objects([pm, rule, bad_action])
    assert problems[:2] == [
        "PodMonitor/cars-metrics: spec.podMetricsEndpoints.0: Additional properties are not allowed"
        " ('prot' was unexpected)",
        "PrometheusRule/cars-slo: spec.groups.0.rules.0.for: 300 is not of type 'string'",
    ]
    assert problems[2].startswith("PodMonitor/cars-metrics: spec.podMetricsEndpoints.0.relabelings.0.action: 'rename'")


def test_without_the_toolchain_crds_a_pod_monitor_is_a_problem_naming_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ENDPOINTS_TOOLCHAIN_DIR", str(tmp_path / "tc"))
    monkeypatch.setattr(k8s_schema, "_validators", {})
    assert k8s_schema.validate_object(pod_monitor("cars", "ml")) == [
        "PodMonitor/cars-metrics: no schema for kind 'PodMonitor' in 'monitoring.coreos.com/v1': the Prometheus "
        f"Operator's CRDs are not in {tmp_path / 'tc' / 'crds'} (`scripts/toolchain.sh build prometheus-operator-crds`"
        " installs them; ENDPOINTS_TOOLCHAIN_DIR moves the folder)"
    ]
