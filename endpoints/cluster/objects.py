"""What ``endpoints cluster up`` puts into the fresh API server before the stacks are deployed: plain dicts.

* RBAC for the fake kubelet (kwok) and the stand-in scheduler, each only what it needs;
* fake nodes (annotated for kwok): a CPU pool, and one GPU pool per GPU pool of the instance-type catalog, labelled
  ``<pool label>=<pool>``, tainted ``nvidia.com/gpu:NoSchedule`` and with ``nvidia.com/gpu`` capacity, as
  :mod:`components.builders.compute` schedules onto them (a node selector on the pool label, the GPU toleration);
* the CRDs the components create objects of (Gateway API, Kueue, KEDA from the package data; the Prometheus
  Operator's PodMonitor and PrometheusRule from the toolchain's ``crds/``, see :func:`toolchain_crd_objects`; kwok's
  Logs and ClusterLogs from its ``kwok-crds/``, see :func:`kwok_crd_objects`), and the GatewayClass and Gateways
  the stacks name (``gateway-system/public``, ``/private``, ``/internal``);
* a few ReadWriteMany PersistentVolumes, so each stack's batch volume claim binds as a storage class would make it.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from endpoints.catalog import InstanceCatalog

POOL_LABEL = "ml-endpoints.io/pool"  # ClusterSettings.pool_label's default
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
CLUSTER_LABEL = {"app.kubernetes.io/part-of": "ml-endpoints-local-cluster"}
GATEWAY_NAMESPACE = "gateway-system"
GATEWAY_CLASS = "ml-endpoints-local"
GATEWAYS = ("public", "private", "internal")
CPU_NODES = 3  # prod spreads three instances over nodes
GPU_NODES_PER_POOL = 2
GPUS_PER_NODE = 4
BATCH_VOLUMES = 4  # one claim per stack; dev, staging, prod and one spare
CRD_FILES = (
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_grpcroutes.yaml",
    "gateway.networking.k8s.io_httproutes.yaml",
    "gateway.networking.k8s.io_referencegrants.yaml",
    "keda.sh_scaledobjects.yaml",
    "keda.sh_triggerauthentications.yaml",
    "kueue.x-k8s.io_clusterqueues.yaml",
    "kueue.x-k8s.io_localqueues.yaml",
    "kueue.x-k8s.io_resourceflavors.yaml",
    "kueue.x-k8s.io_workloadpriorityclasses.yaml",
)
# The Prometheus Operator's CRDs (the kinds `ml-endpoints:monitoring: true` renders): not in the repository;
# scripts/toolchain.sh copies them unchanged from its Go module (toolchain/versions.env) into <toolchain>/crds.
TOOLCHAIN_CRD_FILES = ("monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")
TOOLCHAIN_CRD_COMMAND = "scripts/toolchain.sh build prometheus-operator-crds"
# kwok's Logs and ClusterLogs CRDs (kwok.x-k8s.io/v1alpha1: which file kwok serves as a pod's log), copied unchanged
# from kwok's Go module (kustomize/crd/bases) into <toolchain>/kwok-crds by scripts/toolchain.sh.
KWOK_CRD_FILES = ("kwok.x-k8s.io_logs.yaml", "kwok.x-k8s.io_clusterlogs.yaml")
KWOK_CRD_COMMAND = "scripts/toolchain.sh build kwok-crds"
KWOK_CRD_KINDS = ("Logs", "ClusterLogs")  # kwok's --enable-crds: it watches these and serves the files they name


def _meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(CLUSTER_LABEL)}
    if namespace:
        meta["namespace"] = namespace
    for key, value in extra.items():
        meta.setdefault(key, {}).update(value)
    return meta


def _cluster_role(name: str, rules: list[dict[str, Any]], user: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(name), "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]


def rbac_objects(kwok_user: str, binder_user: str) -> list[dict[str, Any]]:
    """ClusterRoles of the fake kubelet (node and pod status, node leases, events) and the stand-in scheduler."""
    kwok = [
        {
            "apiGroups": [""],
            "resources": ["nodes", "nodes/status"],
            "verbs": ["get", "list", "watch", "update", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["pods", "pods/status"],
            "verbs": ["get", "list", "watch", "update", "patch", "delete"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {
            "apiGroups": ["", "events.k8s.io"],
            "resources": ["events"],
            "verbs": ["create", "update", "patch", "get", "list", "watch", "delete"],
        },
        {"apiGroups": ["kwok.x-k8s.io"], "resources": ["logs", "clusterlogs"], "verbs": ["get", "list", "watch"]},
    ]
    binder = [
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "update", "patch"]},
    ]
    return [
        *_cluster_role("ml-endpoints:kwok", kwok, kwok_user),
        *_cluster_role("ml-endpoints:binder", binder, binder_user),
    ]


def _node(name: str, pool: str, cpu: str, memory: str, gpus: int) -> dict[str, Any]:
    capacity = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "200Gi"}
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        POOL_LABEL: pool,
    }
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(name, labels=labels, annotations={KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]}),
        "spec": {},
        # kwok's node stages fill conditions, addresses and heartbeats; capacity is what the scheduler counts.
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }
    if gpus:
        node["spec"]["taints"] = [dict(GPU_TAINT)]
    return node


def node_objects(catalog: InstanceCatalog | None = None) -> list[dict[str, Any]]:
    """Fake nodes: ``CPU_NODES`` in the ``cpu`` pool and ``GPU_NODES_PER_POOL`` per GPU pool of the catalog.

    Each node is as big as the largest instance type of its pool (so every type fits) and no smaller than 32 CPUs,
    128 GiB; GPU nodes carry ``GPUS_PER_NODE`` GPUs (at least the largest type's count).
    """
    catalog = catalog or InstanceCatalog.default()
    pools: dict[str, list[Any]] = {}
    for it in catalog.values():
        pools.setdefault(it.pool, []).append(it)
    nodes = []
    for pool, types in sorted(pools.items()):
        cpu = max(32, *(int(t.vcpu) + 1 for t in types))
        memory_gib = max(128, *(int(t.memory_gib) + 8 for t in types))
        gpus = max(t.gpu_count for t in types)
        count = GPU_NODES_PER_POOL if gpus else CPU_NODES
        gpus = max(gpus, GPUS_PER_NODE) if gpus else 0
        for i in range(count):
            nodes.append(_node(f"kwok-{pool}-{i}", pool, str(cpu), f"{memory_gib}Gi", gpus))
    return nodes


def crd_objects() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of components/crds (the project's package data, copied from upstream)."""
    folder = resources.files("components") / "crds"
    return [yaml.safe_load((folder / name).read_text(encoding="utf-8")) for name in CRD_FILES]


def missing_toolchain_crds(crd_dir: Path) -> list[str]:
    """The files of :data:`TOOLCHAIN_CRD_FILES` absent from ``crd_dir``."""
    return [name for name in TOOLCHAIN_CRD_FILES if not (crd_dir / name).is_file()]


def toolchain_crd_objects(crd_dir: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of :data:`TOOLCHAIN_CRD_FILES`, read from ``crd_dir`` (the toolchain's)."""
    return [yaml.safe_load((crd_dir / name).read_text(encoding="utf-8")) for name in TOOLCHAIN_CRD_FILES]


def missing_kwok_crds(crd_dir: Path) -> list[str]:
    """The files of :data:`KWOK_CRD_FILES` absent from ``crd_dir``."""
    return [name for name in KWOK_CRD_FILES if not (crd_dir / name).is_file()]


def kwok_crd_objects(crd_dir: Path) -> list[dict[str, Any]]:
    """kwok's Logs and ClusterLogs CustomResourceDefinitions, read from ``crd_dir`` (the toolchain's ``kwok-crds``)."""
    return [yaml.safe_load((crd_dir / name).read_text(encoding="utf-8")) for name in KWOK_CRD_FILES]


def gateway_objects(gateways: Iterable[str] = GATEWAYS) -> list[dict[str, Any]]:
    """The gateway namespace, a GatewayClass no controller claims, and the Gateways the stacks attach routes to.

    No data plane runs here: the Gateways stay unprogrammed, which is all the routes need to be accepted as objects.
    """
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(GATEWAY_NAMESPACE)},
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": _meta(GATEWAY_CLASS),
            "spec": {"controllerName": "ml-endpoints.io/local-cluster-no-data-plane"},
        },
    ]
    for name in gateways:
        objs.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": _meta(name, GATEWAY_NAMESPACE),
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [
                        {
                            "name": "http",
                            "protocol": "HTTP",
                            "port": 80,
                            "allowedRoutes": {"namespaces": {"from": "All"}},
                        }
                    ],
                },
            }
        )
    return objs


def volume_objects(count: int = BATCH_VOLUMES, size: str = "1Ti") -> list[dict[str, Any]]:
    """ReadWriteMany PersistentVolumes with no storage class: a batch claim of the cluster default class binds one."""
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": _meta(f"ml-endpoints-local-{i}"),
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                # Never mounted: kwok runs no container. A hostPath keeps the object valid.
                "hostPath": {"path": f"/var/lib/ml-endpoints-local/{i}", "type": "DirectoryOrCreate"},
            },
        }
        for i in range(count)
    ]


def bootstrap_objects(
    kwok_user: str, binder_user: str, toolchain_crds: Path | None = None, kwok_crds: Path | None = None
) -> list[dict[str, Any]]:
    """Everything ``cluster up`` applies, in order (CRDs before the objects of their kinds); ``toolchain_crds``: the
    folder to read :data:`TOOLCHAIN_CRD_FILES` from, ``kwok_crds`` the one of :data:`KWOK_CRD_FILES` (None: left
    out)."""
    return [
        *rbac_objects(kwok_user, binder_user),
        *crd_objects(),
        *(toolchain_crd_objects(toolchain_crds) if toolchain_crds is not None else []),
        *(kwok_crd_objects(kwok_crds) if kwok_crds is not None else []),
        *node_objects(),
        *gateway_objects(),
        *volume_objects(),
    ]
