"""The monitoring objects (``ml-endpoints:monitoring: true``: PodMonitor, PrometheusRule, dashboard ConfigMap) against
the throwaway API server, which serves the Prometheus Operator's CRDs as ``endpoints cluster up`` applied them from
the toolchain (scripts/toolchain.sh installs them from the operator's Go module): every planned object passes a
server-side dry run, a bad field, type or value is refused naming the field, and `pulumi up` of the online endpoint
with monitoring on creates them as rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_helpers import REPO, Cluster, Project, contains

from components.builders.monitoring import pod_monitor, prometheus_rule
from endpoints.cluster.apply import apply, crd_established, dry_run_all, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

STACK = "monitoring"
NAMESPACE = "ml-monitoring"


def _monitoring_stack(project: Project, online_only: bool = False) -> None:
    """stacks/Pulumi.monitoring.yaml: staging's config with monitoring on, in a namespace of its own (``online_only``:
    without the batch endpoint, which renders no monitoring objects)."""
    doc = yaml.safe_load((project.root / "stacks" / "Pulumi.staging.yaml").read_text())
    cfg = doc["config"]
    cfg["ml-endpoints:monitoring"] = True
    cfg["ml-endpoints:namespace"] = NAMESPACE
    if online_only:
        cfg["ml-endpoints:endpoints"] = ["examples/car-classifier"]
        cfg.pop("ml-endpoints:jobApiImage")
        for key in ("ml-endpoints:overrides", "ml-endpoints:keyRotation"):
            cfg[key].pop("car-classifier-batch")
    (project.root / "stacks" / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_cluster_up_serves_the_prometheus_operator_crds(cluster: Cluster) -> None:
    client = cluster.client()
    for name in ("podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        assert crd_established(client, name), name
    crd = client.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    annotations = crd.get(name="podmonitors.monitoring.coreos.com").to_dict()["metadata"]["annotations"]
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "toolchain" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert annotations["operator.prometheus.io/version"] == versions["PROMETHEUS_OPERATOR_VERSION"]


def test_every_object_of_a_stack_with_monitoring_passes_a_server_side_dry_run(
    cluster: Cluster, project: Project, tmp_path: Path
) -> None:
    _monitoring_stack(project)
    out = tmp_path / "plan"
    project.run("endpoints", "plan", "--stack", STACK, "--out", str(out), timeout=600)
    objs = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]
    kinds = [o["kind"] for o in objs]
    # One PodMonitor and one PrometheusRule per online endpoint (car-classifier), with its dashboard.
    assert (kinds.count("PodMonitor"), kinds.count("PrometheusRule")) == (1, 1)
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]]
    client = cluster.client()
    created = []
    for ns in (o for o in objs if o["kind"] == "Namespace"):  # admission refuses objects of a missing namespace
        apply(client, ns)
        created.append(ns["metadata"]["name"])
    try:
        rejected = dry_run_all(client, objs)
    finally:
        res = client.resources.get(api_version="v1", kind="Namespace")
        for name in created:
            res.delete(name=name)
        for name in created:
            wait_for(f"namespace {name} gone", lambda n=name: _gone(client, n), 180)
    assert [str(r) for r in rejected] == []


def _gone(client: Any, namespace: str) -> bool:
    items = client.resources.get(api_version="v1", kind="Namespace").get().to_dict()["items"]
    return namespace not in {i["metadata"]["name"] for i in items}


def test_a_bad_field_type_or_value_in_a_pod_monitor_or_rule_is_refused_naming_the_field(cluster: Cluster) -> None:
    """The check can fail: the CRDs' schemas refuse an unknown field, a wrong type (server-side apply's typed patch,
    before admission) and a value outside an enum (the CRD's validation)."""
    good = [pod_monitor("cars", "default"), prometheus_rule("cars", "default")]
    field = pod_monitor("cars", "default")
    field["spec"]["podMetricsEndpoints"][0]["prot"] = "http"
    typed = prometheus_rule("cars", "default")
    typed["spec"]["groups"][0]["rules"][0]["for"] = 300
    value = pod_monitor("cars", "default")
    value["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rename"
    client = cluster.client()
    assert dry_run_all(client, good) == []
    rejected = dry_run_all(client, [field, typed, value])
    assert [(r.ref, r.message) for r in rejected[:2]] == [
        (
            "PodMonitor default/cars-metrics",
            "failed to create typed patch object (default/cars-metrics; monitoring.coreos.com/v1, Kind=PodMonitor): "
            ".spec.podMetricsEndpoints[0].prot: field not declared in schema",
        ),
        (
            "PrometheusRule default/cars-slo",
            "failed to create typed patch object (default/cars-slo; monitoring.coreos.com/v1, Kind=PrometheusRule): "
            '.spec.groups[name="cars.slo"].rules[0].for: expected string, got &value.valueUnstructured{Value:300}',
        ),
    ]
    assert (rejected[2].ref, rejected[2].status) == ("PodMonitor default/cars-metrics", 422)
    assert rejected[2].message.startswith(
        'PodMonitor.monitoring.coreos.com "cars-metrics" is invalid: spec.podMetricsEndpoints[0].relabelings[0].action:'
        ' Unsupported value: "rename": supported values: "replace", '
    )


def test_plan_without_the_toolchain_crds_names_the_command(project: Project, tmp_path: Path) -> None:
    """The offline validator reads the CRDs from the toolchain only: without them, the plan says how to get them."""
    _monitoring_stack(project)
    env = {**project.env, "ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc")}
    proc = project.run("endpoints", "plan", "--stack", STACK, timeout=600, check=False, env=env)
    assert proc.returncode != 0
    assert (
        f"the Prometheus Operator's CRDs are not in {tmp_path / 'tc' / 'crds'} "
        "(`scripts/toolchain.sh build prometheus-operator-crds` installs them" in proc.stdout + proc.stderr
    )


def test_a_kind_whose_crd_is_not_installed_is_a_rejection(cluster: Cluster) -> None:
    """Only PodMonitor and PrometheusRule are installed: a ServiceMonitor is refused, not an exception."""
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "cars", "namespace": "default"},
        "spec": {"selector": {}, "endpoints": [{"port": "http"}]},
    }
    assert [str(r) for r in dry_run_all(cluster.client(), [monitor])] == [
        "ServiceMonitor default/cars: HTTP 404: the server serves no kind 'ServiceMonitor' in 'monitoring.coreos.com/v1'"
        " (CRD not installed?)"
    ]


def test_up_of_a_stack_with_monitoring_creates_the_monitoring_objects_as_rendered(
    project: Project, cluster: Cluster, tmp_path: Path
) -> None:
    """`pulumi up` (the real engine and provider) of the online endpoint with monitoring on; destroyed at the end."""
    _monitoring_stack(project, online_only=True)
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    try:
        project.pulumi("up", "--stack", STACK, "--yes", timeout=1500)
        project.run("endpoints", "plan", "--stack", STACK, "--out", str(tmp_path / "plan"))
        wanted = [yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "plan").glob("*.yaml"))]
        wanted = [
            o
            for o in wanted
            if o["kind"] in ("PodMonitor", "PrometheusRule") or o["metadata"]["name"].endswith("-dashboard")
        ]
        assert sorted(o["kind"] for o in wanted) == ["ConfigMap", "PodMonitor", "PrometheusRule"]
        client = cluster.client()
        problems = []
        for want in wanted:
            meta = want["metadata"]
            res = client.resources.get(api_version=want["apiVersion"], kind=want["kind"])
            live = res.get(name=meta["name"], namespace=meta["namespace"]).to_dict()
            problems += [f"{want['kind']} {meta['name']}{d}" for d in contains(live, want)]
        assert problems == []
    finally:
        project.pulumi("destroy", "--stack", STACK, "--yes", timeout=1500, check=False)
        project.pulumi("stack", "rm", STACK, "--yes", "--force", check=False)
