"""Pure builders for the stack's namespace: Pod Security ``restricted`` enforcement and default-deny ingress."""

from __future__ import annotations

from typing import Any

from components.builders.common import MANAGED_BY, k8s_name, metadata


def build_namespace(namespace: str) -> dict[str, Any]:
    """The endpoints' Namespace, enforcing the ``restricted`` Pod Security Standard (the API server then refuses
    any pod that is not non-root, capability-free, seccomp-confined, ...)."""
    labels = {
        **MANAGED_BY,
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(namespace, None, labels)}


def build_default_deny(namespace: str) -> dict[str, Any]:
    """NetworkPolicy denying all ingress to every pod of the namespace; each endpoint then allows its gateway."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(k8s_name("default-deny-ingress"), namespace, dict(MANAGED_BY)),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
