"""Pod security: the Kubernetes "restricted" Pod Security Standard, per container.

A scoring container runs user code on user data; if that code is compromised these settings keep it
from becoming root on the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.rules.common import (
    Context,
    Violation,
    containers,
    count,
    dig,
    make_violation,
    object_label,
    pod_spec,
)
from policies.rules.registry import ResourceRule, resource_validator

POD_TYPES = frozenset(
    {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:apps/v1:DaemonSet",
        "kubernetes:apps/v1:ReplicaSet",
        "kubernetes:batch/v1:Job",
        "kubernetes:batch/v1:CronJob",
        "kubernetes:core/v1:Pod",
    }
)

MIN_UID = 10000
# The only capability the restricted standard lets a container add back.
_ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def _effective(pod: Mapping[str, Any], container: Mapping[str, Any], key: str) -> Any:
    """Container securityContext value, falling back to the pod's (Kubernetes' own precedence)."""
    value = dig(container, "securityContext", key)
    if value is None:
        value = dig(pod, "securityContext", key)
    return value


def check_run_as_non_root(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Every container runs as a non-root uid of at least 10000 (clear of host system users)."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in containers(pod):
        name = c.get("name")
        if _effective(pod, c, "runAsNonRoot") is not True:
            out.append(
                make_violation(
                    "run-as-non-root",
                    obj,
                    f'container "{name}" may run as root; set securityContext.runAsNonRoot: true',
                )
            )
        uid = _effective(pod, c, "runAsUser")
        if uid is None:
            out.append(
                make_violation(
                    "run-as-non-root",
                    obj,
                    f'container "{name}" sets no uid; set securityContext.runAsUser to {MIN_UID} or above',
                )
            )
        elif int(uid) < MIN_UID:
            out.append(
                make_violation(
                    "run-as-non-root",
                    obj,
                    f'container "{name}" runs as uid {count(uid)}; set securityContext.runAsUser to {MIN_UID} or above',
                )
            )
    return out


def check_read_only_root_filesystem(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Every container's root filesystem is read-only (code cannot be swapped at run time)."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    return [
        make_violation(
            "read-only-root-filesystem",
            obj,
            f'container "{c.get("name")}" has a writable root filesystem; set '
            "securityContext.readOnlyRootFilesystem: true and mount an emptyDir at /tmp",
        )
        for c in containers(pod)
        if dig(c, "securityContext", "readOnlyRootFilesystem") is not True
    ]


def check_drop_all_capabilities(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Every container drops ALL capabilities and adds back none but NET_BIND_SERVICE."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in containers(pod):
        name = c.get("name")
        drop = [str(x) for x in dig(c, "securityContext", "capabilities", "drop") or ()]
        if "ALL" not in drop:
            out.append(
                make_violation(
                    "drop-all-capabilities",
                    obj,
                    f'container "{name}" does not drop ALL capabilities; set '
                    'securityContext.capabilities.drop: ["ALL"]',
                )
            )
        added = [str(x) for x in dig(c, "securityContext", "capabilities", "add") or ()]
        extra = [cap for cap in added if cap not in _ALLOWED_ADDED_CAPABILITIES]
        if extra:
            out.append(
                make_violation(
                    "drop-all-capabilities",
                    obj,
                    f'container "{name}" adds capabilities {", ".join(extra)}; remove them from '
                    "securityContext.capabilities.add",
                )
            )
    return out


def check_seccomp_runtime_default(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Every container runs under the RuntimeDefault (or a Localhost) seccomp profile."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in containers(pod):
        profile = _effective(pod, c, "seccompProfile") or {}
        kind = profile.get("type") if isinstance(profile, Mapping) else None
        if kind in ("RuntimeDefault", "Localhost"):
            continue
        what = "has no seccomp profile" if kind is None else f"uses seccomp profile {kind}"
        out.append(
            make_violation(
                "seccomp-runtime-default",
                obj,
                f'container "{c.get("name")}" {what}; set securityContext.seccompProfile.type: RuntimeDefault',
            )
        )
    return out


def check_no_privilege_escalation(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """No container is privileged or may gain privileges (setuid binaries)."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in containers(pod):
        name = c.get("name")
        if dig(c, "securityContext", "privileged") is True:
            out.append(
                make_violation(
                    "no-privilege-escalation",
                    obj,
                    f'container "{name}" is privileged; remove securityContext.privileged',
                )
            )
        if dig(c, "securityContext", "allowPrivilegeEscalation") is not False:
            out.append(
                make_violation(
                    "no-privilege-escalation",
                    obj,
                    f'container "{name}" allows privilege escalation; set '
                    "securityContext.allowPrivilegeEscalation: false",
                )
            )
    return out


def check_no_host_access(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """No host namespaces, hostPath volumes or host ports: the pod stays inside its sandbox."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for field, what in (("hostNetwork", "host network"), ("hostPID", "host PID namespace"), ("hostIPC", "host IPC")):
        if pod.get(field) is True:
            out.append(make_violation("no-host-access", obj, f"{object_label(obj)} uses the {what}; remove {field}"))
    for volume in pod.get("volumes") or ():
        host_path = volume.get("hostPath")
        if host_path is not None:
            out.append(
                make_violation(
                    "no-host-access",
                    obj,
                    f'volume "{volume.get("name")}" mounts hostPath {host_path.get("path")}; use an emptyDir, '
                    "a PersistentVolumeClaim or a projected volume",
                )
            )
    for c in containers(pod):
        for port in c.get("ports") or ():
            if port.get("hostPort"):
                out.append(
                    make_violation(
                        "no-host-access",
                        obj,
                        f'container "{c.get("name")}" binds host port {count(port.get("hostPort"))}; '
                        "remove ports[].hostPort",
                    )
                )
    return out


RUN_AS_NON_ROOT = ResourceRule(
    "run-as-non-root",
    "Containers must run as a non-root user with uid >= 10000, so escaped code is not root on the node "
    "and does not share a uid with host system users.",
    POD_TYPES,
    check_run_as_non_root,
)
READ_ONLY_ROOT_FILESYSTEM = ResourceRule(
    "read-only-root-filesystem",
    "Containers must have a read-only root filesystem, so compromised code cannot replace the server or "
    "the model; scratch space comes from an emptyDir.",
    POD_TYPES,
    check_read_only_root_filesystem,
)
DROP_ALL_CAPABILITIES = ResourceRule(
    "drop-all-capabilities",
    "Containers must drop ALL Linux capabilities (restricted Pod Security Standard); a scoring server needs none.",
    POD_TYPES,
    check_drop_all_capabilities,
)
SECCOMP_RUNTIME_DEFAULT = ResourceRule(
    "seccomp-runtime-default",
    "Containers must run under the RuntimeDefault seccomp profile, which blocks syscalls used in container escapes.",
    POD_TYPES,
    check_seccomp_runtime_default,
)
NO_PRIVILEGE_ESCALATION = ResourceRule(
    "no-privilege-escalation",
    "Containers must not be privileged nor allowed to escalate privileges (setuid binaries), or the other "
    "settings can be undone from inside.",
    POD_TYPES,
    check_no_privilege_escalation,
)
NO_HOST_ACCESS = ResourceRule(
    "no-host-access",
    "Pods must not use host namespaces, hostPath volumes or host ports: each one is a path out of the sandbox.",
    POD_TYPES,
    check_no_host_access,
)

RULES: tuple[ResourceRule, ...] = (
    RUN_AS_NON_ROOT,
    READ_ONLY_ROOT_FILESYSTEM,
    DROP_ALL_CAPABILITIES,
    SECCOMP_RUNTIME_DEFAULT,
    NO_PRIVILEGE_ESCALATION,
    NO_HOST_ACCESS,
)


run_as_non_root_validator = resource_validator(RUN_AS_NON_ROOT)
read_only_root_filesystem_validator = resource_validator(READ_ONLY_ROOT_FILESYSTEM)
drop_all_capabilities_validator = resource_validator(DROP_ALL_CAPABILITIES)
seccomp_runtime_default_validator = resource_validator(SECCOMP_RUNTIME_DEFAULT)
no_privilege_escalation_validator = resource_validator(NO_PRIVILEGE_ESCALATION)
no_host_access_validator = resource_validator(NO_HOST_ACCESS)


VALIDATORS = {
    RUN_AS_NON_ROOT.name: run_as_non_root_validator,
    READ_ONLY_ROOT_FILESYSTEM.name: read_only_root_filesystem_validator,
    DROP_ALL_CAPABILITIES.name: drop_all_capabilities_validator,
    SECCOMP_RUNTIME_DEFAULT.name: seccomp_runtime_default_validator,
    NO_PRIVILEGE_ESCALATION.name: no_privilege_escalation_validator,
    NO_HOST_ACCESS.name: no_host_access_validator,
}
