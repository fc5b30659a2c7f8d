"""Hand a builder's dict to the matching pulumi-kubernetes resource class.

Core kinds become their typed resource (type tokens such as ``kubernetes:apps/v1:Deployment``, which the policy
pack filters on); custom resources become ``apiextensions.CustomResource``. The dict's camelCase keys pass through
unchanged (pulumi-kubernetes sends nested dicts as written).
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

_TYPED: dict[tuple[str, str], Any] = {
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("scheduling.k8s.io/v1", "PriorityClass"): k8s.scheduling.v1.PriorityClass,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def create_object(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Create the resource for one rendered object.

    Args:
        name: Pulumi resource name (unique in the stack; derive it from the component's name).
        obj: The object as a builder returned it.
        opts: Resource options (``parent=`` the component).

    No ``delete_before_replace``: most changes (image, traffic weights, replicas, keys) are in-place updates, and a
    Deployment rolls its pods without a gap. Only a change to an immutable field (a selector, a Secret's type)
    replaces, and for an object whose fixed ``metadata.name`` stays the same the Kubernetes provider itself answers
    the engine's diff with ``deleteBeforeReplace`` (a second object of that name could not be created first). When
    the name or namespace changes, the provider creates the new object before deleting the old one; forcing
    delete-before-replace there (as every object once did) would take a Deployment or its route away before the
    replacement exists: downtime.
    """
    api_version, kind = obj["apiVersion"], obj["kind"]
    fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    cls = _TYPED.get((api_version, kind))
    if cls is None:
        return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, opts=opts, **fields)
    return cls(name, opts=opts, **{_snake(k): v for k, v in fields.items()})
