"""Shared vocabulary of the rules: violations, the stack context, and walking pod templates.

The rules are plain functions over Kubernetes objects as dicts (camelCase, what the API server
accepts). The CrossGuard pack hands them ``args.props`` of a resource; the offline plan hands them
the builders' output. Both see exactly the same messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Environment = Literal["dev", "staging", "prod"]
ENVIRONMENTS: tuple[Environment, ...] = ("dev", "staging", "prod")

# Kinds whose spec carries a pod template, and where it lives.
_POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Violation:
    """One broken rule on one object.

    Attributes:
        policy: kebab-case name of the policy (the CrossGuard policy name).
        message: what is wrong and how to fix it, per container where that applies.
        kind: kind of the offending object (empty when unknown).
        namespace: its namespace (empty when unset).
        name: its name (empty when unset, e.g. auto-named by Pulumi).
    """

    policy: str
    message: str
    kind: str = ""
    namespace: str = ""
    name: str = ""

    def ref(self) -> str:
        """Return ``Kind/namespace/name`` for summaries (missing parts left out)."""
        return "/".join(part for part in (self.kind, self.namespace, self.name) if part)


@dataclass(frozen=True)
class Context:
    """What a rule needs to know about the stack it checks.

    Attributes:
        environment: ``dev``, ``staging`` or ``prod``; prod raises the replica floor to 3, requires image
            digests and private endpoints. Defaults to ``dev``.
        private_gateways: Gateways that are private (reachable only inside the network), as ``name`` or
            ``namespace/name``; a prod HTTPRoute must attach only to one of these. Defaults to ``("private",)``.
        gpu_pool_label: node label key that selects a GPU pool. Defaults to ``ml-endpoints.io/pool``.
    """

    environment: Environment = "dev"
    private_gateways: tuple[str, ...] = ("private",)
    gpu_pool_label: str = "ml-endpoints.io/pool"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_prod(self) -> bool:
        """True for the prod environment."""
        return self.environment == "prod"

    @property
    def min_replicas(self) -> int:
        """Replica floor: 3 in prod (survives one zone and one rollout), 2 elsewhere."""
        return 3 if self.is_prod else 2


ObjectCheck = Callable[[Mapping[str, Any], Context], list[Violation]]


def count(value: Any) -> Any:
    """Render a whole number as an int: CrossGuard hands numbers over as floats (protobuf Struct), 3.0 means 3."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def dig(obj: Any, *path: str) -> Any:
    """Return the value at ``path`` in nested mappings, or None where a step is missing."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def type_token(obj: Mapping[str, Any]) -> str:
    """Return the pulumi-kubernetes type token of an object, e.g. ``kubernetes:apps/v1:Deployment``.

    Core kinds (``apiVersion: v1``) live under ``core/v1`` in Pulumi's tokens; custom resources use
    ``kubernetes:<apiVersion>:<kind>`` as ``apiextensions.CustomResource`` registers them.
    """
    api_version = str(obj.get("apiVersion", ""))
    if "/" not in api_version:
        api_version = f"core/{api_version}"
    return f"kubernetes:{api_version}:{obj.get('kind', '')}"


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the pod spec of a workload object, or None for kinds without pods."""
    path = _POD_TEMPLATE_PATHS.get(str(obj.get("kind", "")))
    if path is None:
        return None
    spec = dig(obj, *path)
    return spec if isinstance(spec, Mapping) else None


def containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Yield init containers then containers of a pod spec (both run code in the pod)."""
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or ():
            if isinstance(container, Mapping):
                yield container


def make_violation(policy: str, obj: Mapping[str, Any], message: str) -> Violation:
    """Build a Violation naming ``obj``."""
    metadata = obj.get("metadata") or {}
    return Violation(
        policy=policy,
        message=message,
        kind=str(obj.get("kind", "")),
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
    )


def object_label(obj: Mapping[str, Any]) -> str:
    """Return ``Kind "name"`` for messages about a whole object."""
    name = dig(obj, "metadata", "name") or "(unnamed)"
    return f'{obj.get("kind", "object")} "{name}"'


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, Any] | None) -> bool:
    """Return True when a label selector (matchLabels and matchExpressions) selects ``labels``.

    An empty selector selects everything, as in Kubernetes.
    """
    labels = labels or {}
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or ())
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ConfigMaps holding a batch deployment's Job template (components.builders.batch_job.build_template_config_map): the
# job API instantiates the template per job, so the rules check the pods it will run through this embedded Job.
BATCH_TEMPLATE_KIND = "batch-template"
JOB_TOKEN = "kubernetes:batch/v1:Job"


def embedded_jobs(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The Job templates a batch-template ConfigMap carries (``ml-endpoints.io/kind: batch-template``); else none.

    Values that are not JSON Jobs are skipped: the job API refuses them at start, naming the file.
    """
    if obj.get("kind") != "ConfigMap" or dig(obj, "metadata", "labels", "ml-endpoints.io/kind") != BATCH_TEMPLATE_KIND:
        return []
    out: list[Mapping[str, Any]] = []
    for value in (obj.get("data") or {}).values():
        try:
            job = json.loads(str(value))
        except ValueError:
            continue
        if isinstance(job, dict) and job.get("kind") == "Job" and job.get("apiVersion") == "batch/v1":
            out.append(job)
    return out
