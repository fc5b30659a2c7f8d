"""``ComputePool``: a node group's scheduling (node selector, tolerations), GPU quota and Kueue flavor."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.builders.common import ClusterSettings
from components.builders.compute import build_gpu_quota, build_resource_flavor, pool_scheduling
from components.kubernetes_objects import create_object
from endpoints.catalog import InstanceType

TYPE_TOKEN = "endpoints:compute_pool:ComputePool"


@dataclass
class ComputePoolArgs:
    """Inputs of a :class:`ComputePool`.

    Attributes:
        pool: Pool name (the catalog's ``pool`` of its instance types).
        instance_types: The instance types that run in the pool (at least one).
        settings: Stack settings (pool label).
        namespaces: Namespaces that get a GPU ResourceQuota (GPU pools only).
        gpu_quota: GPUs each namespace may request (default 0: no quota). Kubernetes counts quota per namespace,
            not per node pool: with several GPU pools, use Kueue ClusterQueues for per-pool caps.
        kueue: Also create the pool's Kueue ResourceFlavor (default False; batch stacks enable it).
        flavor_name: Name of that ResourceFlavor (cluster-scoped; default the pool's name).
    """

    pool: str
    instance_types: list[InstanceType]
    settings: ClusterSettings
    namespaces: list[str] = field(default_factory=list)
    gpu_quota: int = 0
    kueue: bool = False
    flavor_name: str | None = None


class ComputePool(pulumi.ComponentResource):
    """A compute pool.

    Outputs:
        node_selector: Node selector of the pool's pods (empty for unpinned CPU pools).
        tolerations: Tolerations of the pool's pods (the GPU taint for GPU pools).
        gpu: Whether the pool has GPUs.
    """

    node_selector: pulumi.Output[dict[str, str]]
    tolerations: pulumi.Output[list[dict[str, str]]]
    gpu: pulumi.Output[bool]

    def __init__(self, name: str, args: ComputePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        if not args.instance_types:
            raise ValueError(f"ComputePool {name}: no instance types")
        wrong = [it.name for it in args.instance_types if it.pool != args.pool]
        if wrong:
            raise ValueError(f"ComputePool {name}: instance types {wrong} belong to other pools than {args.pool!r}")
        reference = max(args.instance_types, key=lambda it: it.gpu_count)
        is_gpu = reference.gpu_count > 0
        node_selector, tolerations = pool_scheduling(reference, args.settings)
        objs = []
        if is_gpu and args.gpu_quota > 0:
            objs += [(f"{name}-quota-{ns}", build_gpu_quota(args.pool, ns, args.gpu_quota)) for ns in args.namespaces]
        if args.kueue:
            objs.append(
                (f"{name}-flavor", build_resource_flavor(args.pool, reference, args.settings, args.flavor_name))
            )
        for res_name, obj in objs:
            create_object(res_name, obj, pulumi.ResourceOptions(parent=self))
        self.node_selector = pulumi.Output.from_input(node_selector)
        self.tolerations = pulumi.Output.from_input(tolerations)
        self.gpu = pulumi.Output.from_input(is_gpu)
        self.register_outputs({"node_selector": self.node_selector, "tolerations": self.tolerations, "gpu": self.gpu})
