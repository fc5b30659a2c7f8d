"""Pure builders for compute pools: scheduling of instance types onto pools, GPU quotas, Kueue queues.

A *pool* is a node group (AKS node pool, EKS managed node group, ...) whose nodes carry the label
``ClusterSettings.pool_label=<pool>``; GPU pools are tainted ``nvidia.com/gpu:NoSchedule`` (as AKS and GKE do for
GPU node pools) so that only pods asking for GPUs land there. Online deployments use :func:`pool_scheduling`;
the batch components use the Kueue builders (:func:`build_resource_flavor`, :func:`build_cluster_queue`,
:func:`build_local_queue`) and :func:`build_priority_class`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from components.builders.common import MANAGED_BY, ClusterSettings, k8s_name, metadata
from endpoints.catalog import InstanceType

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
KUEUE_API = "kueue.x-k8s.io/v1beta2"


def pool_scheduling(
    instance: InstanceType, settings: ClusterSettings, gpus: int | None = None
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Node selector and tolerations of a pod of ``instance``.

    Args:
        instance: The instance type (its ``pool`` names the node group).
        settings: Stack settings (pool label, whether CPU pools are pinned too).
        gpus: GPUs the pod asks for (default: the instance type's count); a GPU pod always gets the pool selector
            and the GPU toleration.

    Returns:
        ``(nodeSelector, tolerations)``; both empty for a CPU type unless ``settings.pin_cpu_pools``.
    """
    count = instance.gpu_count if gpus is None else gpus
    if count > 0:
        return {settings.pool_label: instance.pool}, [dict(GPU_TOLERATION)]
    if settings.pin_cpu_pools:
        return {settings.pool_label: instance.pool}, []
    return {}, []


def pool_labels(pool: str) -> dict[str, str]:
    """Labels of a pool's objects."""
    return {**MANAGED_BY, "ml-endpoints.io/pool": pool}


def build_gpu_quota(pool: str, namespace: str, gpus: int) -> dict[str, Any]:
    """ResourceQuota capping the GPUs a namespace may request (``requests.nvidia.com/gpu``)."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(k8s_name(pool, "gpu-quota"), namespace, pool_labels(pool)),
        "spec": {"hard": {f"requests.{GPU_RESOURCE}": str(gpus)}},
    }


def build_resource_flavor(
    pool: str, instance: InstanceType, settings: ClusterSettings, name: str | None = None
) -> dict[str, Any]:
    """Kueue ResourceFlavor for a pool: admitted workloads get the pool's node selector (and GPU toleration).

    Args:
        pool: The pool.
        instance: Its reference instance type (the one with the most GPUs).
        settings: Stack settings (pool label).
        name: Flavor name (cluster-scoped; default the pool's name). Stacks name theirs after their namespace
            so that two stacks sharing a cluster never manage the same object.
    """
    node_selector, tolerations = pool_scheduling(instance, settings)
    spec: dict[str, Any] = {"nodeLabels": node_selector or {settings.pool_label: pool}}
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": KUEUE_API,
        "kind": "ResourceFlavor",
        "metadata": metadata(name or pool, None, pool_labels(pool)),
        "spec": spec,
    }


def build_cluster_queue(
    name: str,
    flavors: dict[str, dict[str, str]],
    namespaces: Iterable[str],
    cohort: str | None = None,
) -> dict[str, Any]:
    """Kueue ClusterQueue: nominal quotas per flavor, admitting workloads from ``namespaces``.

    Args:
        name: Queue name (cluster-scoped).
        flavors: flavor (pool) name -> ``{"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "4"}``.
        namespaces: Namespaces whose LocalQueues may point here.
        cohort: Optional cohort for borrowing between queues (default none).
    """
    covered = sorted({r for quotas in flavors.values() for r in quotas})
    spec: dict[str, Any] = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(set(namespaces))}
            ]
        },
        "queueingStrategy": "BestEffortFIFO",
        "resourceGroups": [
            {
                "coveredResources": covered,
                "flavors": [
                    {
                        "name": flavor,
                        "resources": [{"name": r, "nominalQuota": quotas.get(r, "0")} for r in covered],
                    }
                    for flavor, quotas in sorted(flavors.items())
                ],
            }
        ],
    }
    if cohort:
        spec["cohortName"] = cohort
    return {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": metadata(name, None, dict(MANAGED_BY)),
        "spec": spec,
    }


def build_local_queue(name: str, namespace: str, cluster_queue: str) -> dict[str, Any]:
    """Kueue LocalQueue: the namespace's entry to a ClusterQueue (Jobs carry ``kueue.x-k8s.io/queue-name``)."""
    return {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": metadata(name, namespace, dict(MANAGED_BY)),
        "spec": {"clusterQueue": cluster_queue},
    }


def build_priority_class(name: str, value: int, description: str, preempt: bool = True) -> dict[str, Any]:
    """PriorityClass (scheduling/v1). ``preempt=False`` gives ``preemptionPolicy: Never`` (for low priority)."""
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": metadata(name, None, dict(MANAGED_BY)),
        "value": value,
        "globalDefault": False,
        "description": description,
        "preemptionPolicy": "PreemptLowerPriority" if preempt else "Never",
    }


def pools_of(instances: Iterable[InstanceType]) -> dict[str, list[InstanceType]]:
    """Group instance types by pool (sorted by pool name, then type name)."""
    out: dict[str, list[InstanceType]] = {}
    for it in sorted(instances, key=lambda i: (i.pool, i.name)):
        if it not in out.setdefault(it.pool, []):
            out[it.pool].append(it)
    return out
