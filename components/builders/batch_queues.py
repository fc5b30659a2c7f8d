"""Where and when batch jobs run: Kueue queues with a quota per pool, and the batch PriorityClasses.

Every Job carries the Kueue label ``kueue.x-k8s.io/queue-name`` of its endpoint's LocalQueue and is created
suspended, so Kueue queues it while the stack's ClusterQueue has no room in its pool's quota and admits it when
there is; nothing runs while no job does. Low-priority deployments (tag ``priority: low``, Azure's
``low_priority`` tier) get a PriorityClass that never preempts (``batch_job`` adds the spot tolerations).
The pools' ResourceFlavors come from ``components.builders.compute``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from components.builders.batch_options import BatchOptions
from components.builders.common import ClusterSettings, endpoint_labels, k8s_name
from components.builders.compute import GPU_RESOURCE, build_cluster_queue, build_local_queue, build_priority_class
from endpoints.catalog import InstanceType
from endpoints.errors import SpecError
from endpoints.specs import BatchDeployment, BatchEndpoint

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LOW_PRIORITY_CLASS = "ml-endpoints-batch-low"
NORMAL_PRIORITY_CLASS = "ml-endpoints-batch"
Priority = Literal["normal", "low"]


def priority_of(deployment: BatchDeployment) -> Priority:
    """``low`` when the deployment is tagged ``priority: low`` (or ``low_priority``), else ``normal``.

    Raises:
        SpecError: the tag holds another value, naming the deployment and the value.
    """
    value = deployment.tags.get("priority", "normal").lower()
    if value in ("low", "low_priority", "lowpriority", "spot"):
        return "low"
    if value in ("normal", "dedicated", "regular"):
        return "normal"
    raise SpecError(f"deployment {deployment.name}: tags.priority: got {value!r}; use low or normal")


def queue_name(endpoint_name: str, options: BatchOptions) -> str:
    """The LocalQueue of an endpoint's jobs: ``options.queue_name``, else the endpoint's own ``<endpoint>-batch``."""
    return options.queue_name or k8s_name(endpoint_name, "batch")


def build_endpoint_local_queue(
    endpoint: BatchEndpoint, settings: ClusterSettings, options: BatchOptions
) -> dict[str, Any]:
    """The endpoint's Kueue LocalQueue (its jobs wait there while ``options.cluster_queue`` has no room)."""
    queue = build_local_queue(queue_name(endpoint.name, options), settings.namespace, options.cluster_queue)
    queue["metadata"]["labels"] = {**queue["metadata"]["labels"], **endpoint_labels(endpoint.name)}
    return queue


def batch_cluster_queue_name(namespace: str) -> str:
    """The stack's Kueue ClusterQueue (cluster-scoped, so named after the stack's namespace)."""
    return k8s_name(namespace, "batch")


def batch_flavor_name(namespace: str, pool: str) -> str:
    """The stack's Kueue ResourceFlavor of a pool (cluster-scoped: named after the namespace and the pool)."""
    return k8s_name(namespace, pool)


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_FACTOR = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(text: str) -> float:
    """A Kubernetes resource quantity (``500m``, ``16``, ``64Gi``, ``1.5G``) as a number of base units.

    Raises:
        ValueError: not a quantity this project writes (no exponent forms), naming the value.
    """
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"got {text!r}; expected a Kubernetes quantity such as 16, 500m, 64Gi")
    return float(m.group(1)) * _FACTOR[m.group(2)]


def _quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def default_pool_quota(jobs: list[tuple[InstanceType, int]]) -> dict[str, str]:
    """Nominal quota of a pool when the stack sets none: room for the largest job of the pool at full size.

    Args:
        jobs: (instance type, instance count) of each batch deployment running in the pool.

    One job of each deployment can always be admitted; further jobs queue until it finishes.
    """

    def request(instance: InstanceType, resource: str, unit: str) -> int:
        return int(instance.kubernetes_resources()["requests"][resource].removesuffix(unit))

    cpu = max(request(i, "cpu", "m") * n for i, n in jobs)
    memory = max(request(i, "memory", "Mi") * n for i, n in jobs)
    gpus = max(i.gpu_count * n for i, n in jobs)
    quota = {"cpu": f"{cpu}m", "memory": f"{memory}Mi"}
    if gpus:
        quota[GPU_RESOURCE] = _quantity(gpus)
    return quota


def build_batch_cluster_queue(namespace: str, quotas: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The stack's ClusterQueue: one ResourceFlavor per pool (:func:`batch_flavor_name`) with its quota.

    Args:
        namespace: The stack's namespace (the only one admitted; it names the queue).
        quotas: pool -> ``{"cpu": ..., "memory": ..., "nvidia.com/gpu": ...}``.
    """
    flavors = {batch_flavor_name(namespace, pool): quota for pool, quota in quotas.items()}
    return build_cluster_queue(batch_cluster_queue_name(namespace), flavors, [namespace])


def build_batch_priority_classes() -> list[dict[str, Any]]:
    """The two PriorityClasses batch Jobs use (cluster-scoped: create them once per cluster, e.g. with the pools).

    Low priority never preempts anything; normal batch work sits below online serving (the default 0 is above).
    """
    return [
        build_priority_class(NORMAL_PRIORITY_CLASS, -10, "Batch endpoint jobs (below online serving)."),
        build_priority_class(
            LOW_PRIORITY_CLASS, -100, "Low-priority batch jobs: never preempt, run on spot capacity.", preempt=False
        ),
    ]


def build_batch_platform_objects(
    namespace: str, quotas: dict[str, dict[str, str]], priority_classes: bool = True
) -> list[dict[str, Any]]:
    """Stack-wide batch objects: the ClusterQueue and (unless another stack of the cluster owns them) the two
    PriorityClasses. The pools' ResourceFlavors come from ``ComputePool``."""
    objs = [build_batch_cluster_queue(namespace, quotas)]
    if priority_classes:
        objs += build_batch_priority_classes()
    return objs
