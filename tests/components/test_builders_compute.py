"""Compute pool builders: scheduling, GPU quota, Kueue queues, priority classes, namespace."""

from __future__ import annotations

from specs_factory import instance

from components.builders.common import ClusterSettings
from components.builders.compute import (
    build_cluster_queue,
    build_gpu_quota,
    build_local_queue,
    build_priority_class,
    build_resource_flavor,
    pool_scheduling,
    pools_of,
)
from components.builders.namespace import build_default_deny, build_namespace
from components.k8s_schema import validate_objects

SETTINGS = ClusterSettings(pool_label="agentpool")


def test_gpu_pool_scheduling() -> None:
    assert pool_scheduling(instance("Standard_NC24ads_A100_v4"), SETTINGS) == (
        {"agentpool": "gpu-a100"},
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )


def test_cpu_pool_scheduling_pinned_only_on_request() -> None:
    assert pool_scheduling(instance("Standard_F4s_v2"), SETTINGS) == ({}, [])
    pinned = ClusterSettings(pool_label="agentpool", pin_cpu_pools=True)
    assert pool_scheduling(instance("Standard_F4s_v2"), pinned) == ({"agentpool": "cpu"}, [])


def test_gpu_resources_asked_on_a_cpu_type_still_get_gpu_scheduling() -> None:
    assert pool_scheduling(instance("Standard_DS3_v2"), SETTINGS, gpus=1)[1] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_gpu_quota() -> None:
    quota = build_gpu_quota("gpu-t4", "ml-prod", 4)
    assert quota["metadata"]["name"] == "gpu-t4-gpu-quota"
    assert quota["metadata"]["namespace"] == "ml-prod"
    assert quota["spec"] == {"hard": {"requests.nvidia.com/gpu": "4"}}


def test_kueue_objects() -> None:
    flavor = build_resource_flavor("gpu-t4", instance("Standard_NC4as_T4_v3"), SETTINGS)
    assert flavor["spec"] == {
        "nodeLabels": {"agentpool": "gpu-t4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    assert "namespace" not in flavor["metadata"]
    queue = build_cluster_queue(
        "batch", {"gpu-t4": {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "4"}, "cpu": {"cpu": "64"}}, ["b", "a"]
    )
    assert queue["spec"]["resourceGroups"] == [
        {
            "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
            "flavors": [
                {
                    "name": "cpu",
                    "resources": [
                        {"name": "cpu", "nominalQuota": "64"},
                        {"name": "memory", "nominalQuota": "0"},
                        {"name": "nvidia.com/gpu", "nominalQuota": "0"},
                    ],
                },
                {
                    "name": "gpu-t4",
                    "resources": [
                        {"name": "cpu", "nominalQuota": "32"},
                        {"name": "memory", "nominalQuota": "128Gi"},
                        {"name": "nvidia.com/gpu", "nominalQuota": "4"},
                    ],
                },
            ],
        }
    ]
    assert queue["spec"]["namespaceSelector"]["matchExpressions"][0]["values"] == ["a", "b"]
    local = build_local_queue("batch", "ml", "batch")
    assert local["spec"] == {"clusterQueue": "batch"}
    low = build_priority_class("ml-low", 100, "Low-priority batch work.", preempt=False)
    assert (low["value"], low["preemptionPolicy"], low["globalDefault"]) == (100, "Never", False)
    assert validate_objects([flavor, queue, local, low, build_gpu_quota("gpu-t4", "ml", 2)]) == []


def test_namespace_is_restricted_and_default_deny() -> None:
    ns = build_namespace("ml-prod")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deny = build_default_deny("ml-prod")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert validate_objects([ns, deny]) == []


def test_pools_of_groups_by_pool() -> None:
    pools = pools_of([instance("Standard_NC4as_T4_v3"), instance("Standard_DS3_v2"), instance("Standard_NC8as_T4_v3")])
    assert {k: [i.name for i in v] for k, v in pools.items()} == {
        "cpu": ["Standard_DS3_v2"],
        "gpu-t4": ["Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3"],
    }
