"""The restricted Pod Security Standard as ``securityContext``s: the one home of what every pod of the project runs
under (serving pods, model fetchers, batch runners, the job API). The policy pack's ``pod_security`` rules check
the same fields."""

from __future__ import annotations

from typing import Any

from components.builders.common import ClusterSettings


def restricted_container_security(settings: ClusterSettings) -> dict[str, Any]:
    """A container ``securityContext`` of the restricted Pod Security Standard (non-root, read-only root, no
    privilege escalation, every capability dropped, RuntimeDefault seccomp)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_user,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security(settings: ClusterSettings) -> dict[str, Any]:
    """The pod ``securityContext`` that goes with :func:`restricted_container_security`."""
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_user,
        "fsGroup": settings.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
