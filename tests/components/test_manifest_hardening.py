"""Issue 13 item 17: default-deny egress for the batch job API and runner pods, ephemeral storage on every container.

Rendered from the repository's stacks by the same builders ``pulumi up`` uses (``render_stack``); every object is
also schema-validated by the plan tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.builders.stack import render_stack
from components.builders.stack_config import load_stack_config, settings_from_config
from policies.rules.common import containers, embedded_jobs, pod_spec

REPO = Path(__file__).resolve().parents[2]
DNS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def _render(stack: str, **extra: object):
    values = load_stack_config(REPO, stack)
    values.update(extra)
    return render_stack(settings_from_config(values, stack), REPO)


def _workloads(objects: list[dict]) -> list[dict]:
    out = []
    for obj in objects:
        out.extend(embedded_jobs(obj))
        if pod_spec(obj) is not None:
            out.append(obj)
    return out


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_container_has_ephemeral_storage_requests_and_limits(stack: str) -> None:
    workloads = _workloads(_render(stack).objects)
    assert {w["kind"] for w in workloads} >= {"Deployment", "Job"}
    missing = [
        f"{w['kind']}/{w['metadata']['name']}/{c['name']}"
        for w in workloads
        for c in containers(pod_spec(w))  # type: ignore[arg-type]
        if not all("ephemeral-storage" in (c.get("resources") or {}).get(k, {}) for k in ("requests", "limits"))
    ]
    assert missing == []


def _policies(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}


def _pod_labels(objects: list[dict], kind: str, name: str) -> dict[str, str]:
    for obj in [*objects, *(j for o in objects for j in embedded_jobs(o))]:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj["spec"]["template"]["metadata"]["labels"]
    raise AssertionError(f"no {kind}/{name}")


def test_job_api_and_runner_pods_deny_egress_but_dns_api_server_and_storage() -> None:
    objects = _render("prod").objects  # prod allows 10.20.0.0/16 (egressAllowCidrs)
    policies = _policies(objects)
    api = policies["car-classifier-batch-jobs-egress"]["spec"]
    assert api == {
        "podSelector": {
            "matchLabels": {"ml-endpoints.io/endpoint": "car-classifier-batch", "ml-endpoints.io/deployment": "jobs"}
        },
        "policyTypes": ["Egress"],
        "egress": [
            DNS,
            {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]},
            {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
        ],
    }
    runners = policies["car-classifier-batch-runners-egress"]["spec"]
    assert runners == {
        "podSelector": {
            "matchLabels": {"ml-endpoints.io/endpoint": "car-classifier-batch", "ml-endpoints.io/kind": "batch-job"}
        },
        "policyTypes": ["Egress"],
        "egress": [DNS, {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}],
    }
    # The selectors select the pods they are meant for (and the runner policy every job's pods).
    api_pods = _pod_labels(objects, "Deployment", "car-classifier-batch-jobs")
    assert api["podSelector"]["matchLabels"].items() <= api_pods.items()
    runner_pods = _pod_labels(objects, "Job", "car-classifier-batch-nightly-batch")
    assert runners["podSelector"]["matchLabels"].items() <= runner_pods.items()
    assert not runners["podSelector"]["matchLabels"].items() <= api_pods.items()
    # Each endpoint's job API writes only under its own folder of the shared volume (issue 13 item 8).
    api = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "car-classifier-batch-jobs")
    args = api["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--output-root") + 1] == "/mnt/batch/outputs/car-classifier-batch"


def test_api_server_cidrs_pin_the_job_api_egress() -> None:
    policies = _policies(_render("dev", apiServerCidrs=["10.0.0.1/32"]).objects)
    assert policies["car-classifier-batch-jobs-egress"]["spec"]["egress"] == [
        DNS,
        {
            "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
        },
    ]
    assert policies["car-classifier-batch-runners-egress"]["spec"]["egress"] == [DNS]
