"""Workload rules: resources, probes, images, replicas, disruption budgets, exposure and network isolation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policies.rules.common import (
    GPU_RESOURCE,
    Context,
    Violation,
    containers,
    count,
    dig,
    make_violation,
    object_label,
    pod_spec,
    selector_matches,
)
from policies.rules.pod_security import POD_TYPES
from policies.rules.registry import (
    ResourceRule,
    StackRule,
    resource_validator,
    stack_validator,
)

LONG_RUNNING_TYPES = frozenset(
    {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet"}
)
REPLICATED_TYPES = frozenset({"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"})
SCALER_TYPES = frozenset(
    {
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "kubernetes:autoscaling/v1:HorizontalPodAutoscaler",
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
    }
)
PDB_TYPES = frozenset({"kubernetes:policy/v1:PodDisruptionBudget"})
SERVICE_TYPES = frozenset({"kubernetes:core/v1:Service"})

_PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc", "exec")


# --- container-resources -------------------------------------------------------------------------------------------


def _quantity_str(value: Any) -> str:
    return str(count(value))


def check_container_resources(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Every container requests and limits CPU and memory; a GPU request comes with an equal GPU limit."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in containers(pod):
        name = c.get("name")
        requests = dig(c, "resources", "requests") or {}
        limits = dig(c, "resources", "limits") or {}
        for resource, label in (("cpu", "CPU"), ("memory", "memory")):
            if resource not in requests:
                out.append(
                    make_violation(
                        "container-resources",
                        obj,
                        f'container "{name}" has no {label} request; set resources.requests.{resource}',
                    )
                )
            if resource not in limits:
                out.append(
                    make_violation(
                        "container-resources",
                        obj,
                        f'container "{name}" has no {label} limit; set resources.limits.{resource}',
                    )
                )
        gpu_request = requests.get(GPU_RESOURCE)
        gpu_limit = limits.get(GPU_RESOURCE)
        if gpu_request is not None and gpu_limit is None:
            out.append(
                make_violation(
                    "container-resources",
                    obj,
                    f'container "{name}" requests {count(gpu_request)} {GPU_RESOURCE} without a limit; '
                    f'set resources.limits."{GPU_RESOURCE}" to {count(gpu_request)}',
                )
            )
        elif gpu_request is not None and _quantity_str(gpu_request) != _quantity_str(gpu_limit):
            out.append(
                make_violation(
                    "container-resources",
                    obj,
                    f'container "{name}" requests {count(gpu_request)} {GPU_RESOURCE} but limits {count(gpu_limit)}; '
                    f'set resources.limits."{GPU_RESOURCE}" equal to the request',
                )
            )
    return out


# --- distinct-probes -----------------------------------------------------------------------------------------------


def _handler(probe: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key in _PROBE_HANDLERS:
        if key in probe:
            value = probe[key]
            return key, dict(value) if isinstance(value, Mapping) else value
    return None


def check_distinct_probes(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Every long-running container has readiness and liveness probes, and they check different things.

    Readiness follows the model (not ready until ``init()`` succeeded); liveness must not, or a slow model load
    gets the pod killed in a loop.
    """
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in pod.get("containers") or ():
        name = c.get("name")
        readiness, liveness = c.get("readinessProbe"), c.get("livenessProbe")
        if not readiness:
            out.append(
                make_violation(
                    "distinct-probes",
                    obj,
                    f'container "{name}" has no readiness probe; set readinessProbe (GET /ready)',
                )
            )
        if not liveness:
            out.append(
                make_violation(
                    "distinct-probes", obj, f'container "{name}" has no liveness probe; set livenessProbe (GET /)'
                )
            )
        if readiness and liveness and _handler(readiness) == _handler(liveness):
            out.append(
                make_violation(
                    "distinct-probes",
                    obj,
                    f'container "{name}" uses the same check for readiness and liveness; point livenessProbe at '
                    "a check that does not depend on the model (GET /)",
                )
            )
    return out


# --- pinned-images -------------------------------------------------------------------------------------------------


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """Split ``registry/repo:tag@sha256:...`` into (repository, tag, digest); missing parts are None."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last = image.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:  # a colon before the last slash is a registry port, not a tag
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def check_pinned_images(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Images are pinned: never ``:latest`` or untagged; in prod, by digest."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in containers(pod):
        name, image = c.get("name"), str(c.get("image") or "")
        _, tag, digest = split_image(image)
        if digest is not None:
            continue
        if tag is None:
            message = (
                f'container "{name}" uses untagged image "{image}"; pin a version tag or a digest (image@sha256:...)'
            )
        elif tag == "latest":
            message = f'container "{name}" uses image "{image}"; pin a version tag or a digest (image@sha256:...)'
        elif ctx.is_prod:
            message = f'container "{name}" uses image "{image}" without a digest; prod requires image@sha256:...'
        else:
            continue
        out.append(make_violation("pinned-images", obj, message))
    return out


# --- min-replicas --------------------------------------------------------------------------------------------------


def check_min_replicas(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Replica counts and autoscaler minimums keep the floor (2, or 3 in prod) so one lost pod is no outage."""
    kind = obj.get("kind")
    floor = ctx.min_replicas
    if kind in ("Deployment", "StatefulSet"):
        replicas = dig(obj, "spec", "replicas")
        if replicas is not None and int(replicas) < floor:
            n = int(replicas)
            return [
                make_violation(
                    "min-replicas",
                    obj,
                    f"{object_label(obj)} runs {n} replica{'s' if n != 1 else ''}; set replicas "
                    f"(instance_count) to {floor} or more",
                )
            ]
        return []
    if kind == "HorizontalPodAutoscaler":
        minimum = dig(obj, "spec", "minReplicas")
        value, field = (1 if minimum is None else int(minimum)), "minReplicas"
    elif kind == "ScaledObject":
        minimum = dig(obj, "spec", "minReplicaCount")
        value, field = (0 if minimum is None else int(minimum)), "minReplicaCount"
    else:
        return []
    if value < floor:
        return [
            make_violation(
                "min-replicas", obj, f"{object_label(obj)} allows {value} replicas; set {field} to {floor} or more"
            )
        ]
    return []


def _scaled_targets(objects: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(namespace, deployment name) pairs that an HPA or ScaledObject scales."""
    targets: set[tuple[str, str]] = set()
    for obj in objects:
        kind = obj.get("kind")
        namespace = str(dig(obj, "metadata", "namespace") or "")
        if kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            targets.add((namespace, str(dig(obj, "spec", "scaleTargetRef", "name") or "")))
    return targets


def check_stack_replicas(objects: Sequence[Mapping[str, Any]], ctx: Context) -> list[Violation]:
    """A Deployment that sets no replicas runs one pod unless an autoscaler targets it."""
    targets = _scaled_targets(objects)
    out: list[Violation] = []
    for obj in objects:
        if obj.get("kind") not in ("Deployment", "StatefulSet") or dig(obj, "spec", "replicas") is not None:
            continue
        key = (str(dig(obj, "metadata", "namespace") or ""), str(dig(obj, "metadata", "name") or ""))
        if key not in targets:
            out.append(
                make_violation(
                    "min-replicas-stack",
                    obj,
                    f"{object_label(obj)} sets no replicas and no autoscaler targets it; set replicas to "
                    f"{ctx.min_replicas} or more",
                )
            )
    return out


# --- pdb -----------------------------------------------------------------------------------------------------------


def _is_zero(value: Any) -> bool:
    return str(count(value)).strip() in ("0", "0%")


def check_pdb_allows_eviction(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """A PodDisruptionBudget must leave room for one eviction, or node drains and upgrades hang forever."""
    if obj.get("kind") != "PodDisruptionBudget":
        return []
    max_unavailable = dig(obj, "spec", "maxUnavailable")
    min_available = dig(obj, "spec", "minAvailable")
    if max_unavailable is not None and _is_zero(max_unavailable):
        what = f"maxUnavailable {count(max_unavailable)}"
    elif min_available is not None and str(min_available).strip() == "100%":
        what = f"minAvailable {min_available}"
    else:
        return []
    return [
        make_violation(
            "pdb-allows-eviction",
            obj,
            f"{object_label(obj)} sets {what}, which blocks every eviction; set maxUnavailable to 1",
        )
    ]


def _pod_labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return dig(obj, "spec", "template", "metadata", "labels") or {}


def _pdbs_for(deployment: Mapping[str, Any], objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    namespace = dig(deployment, "metadata", "namespace") or ""
    labels = _pod_labels(deployment)
    return [
        o
        for o in objects
        if o.get("kind") == "PodDisruptionBudget"
        and (dig(o, "metadata", "namespace") or "") == namespace
        and dig(o, "spec", "selector")  # an empty PDB selector selects nothing in policy/v1
        and selector_matches(dig(o, "spec", "selector"), labels)
    ]


def check_stack_pdbs(objects: Sequence[Mapping[str, Any]], ctx: Context) -> list[Violation]:
    """Every Deployment has a PodDisruptionBudget, and none requires all of its replicas to stay up."""
    out: list[Violation] = []
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        pdbs = _pdbs_for(obj, objects)
        if not pdbs:
            out.append(
                make_violation(
                    "pdb-present",
                    obj,
                    f"{object_label(obj)} has no PodDisruptionBudget; add one selecting its pods with maxUnavailable 1",
                )
            )
            continue
        replicas = dig(obj, "spec", "replicas")
        for pdb in pdbs:
            min_available = dig(pdb, "spec", "minAvailable")
            if replicas is None or min_available is None or isinstance(min_available, str):
                continue
            if int(min_available) >= int(replicas):
                out.append(
                    make_violation(
                        "pdb-present",
                        pdb,
                        f"{object_label(pdb)} requires {count(min_available)} of the {count(replicas)} replicas of "
                        f"{object_label(obj)} available, which blocks every eviction; set maxUnavailable to 1",
                    )
                )
    return out


# --- services ------------------------------------------------------------------------------------------------------


def check_no_node_port(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Services stay ClusterIP: traffic enters through the Gateway, where auth and routing rules apply."""
    if obj.get("kind") != "Service":
        return []
    service_type = dig(obj, "spec", "type")
    if service_type in ("NodePort", "LoadBalancer"):
        return [
            make_violation(
                "no-node-port-or-load-balancer",
                obj,
                f"{object_label(obj)} is type {service_type}; use ClusterIP and expose it through the Gateway",
            )
        ]
    return []


# --- default-deny network policy -----------------------------------------------------------------------------------

_ENDPOINT_KINDS = frozenset({"Deployment", "StatefulSet", "Job", "HTTPRoute"})


def is_default_deny(obj: Mapping[str, Any]) -> bool:
    """True for a NetworkPolicy that selects every pod and allows no ingress."""
    if obj.get("kind") != "NetworkPolicy":
        return False
    spec = obj.get("spec") or {}
    selector = spec.get("podSelector") or {}
    if selector.get("matchLabels") or selector.get("matchExpressions"):
        return False
    return "Ingress" in list(spec.get("policyTypes") or ()) and not spec.get("ingress")


def check_stack_default_deny(objects: Sequence[Mapping[str, Any]], ctx: Context) -> list[Violation]:
    """Every namespace holding endpoint workloads or routes has a default-deny ingress NetworkPolicy."""
    namespaces: dict[str, Mapping[str, Any]] = {}
    denied: set[str] = set()
    for obj in objects:
        namespace = str(dig(obj, "metadata", "namespace") or "default")
        if obj.get("kind") in _ENDPOINT_KINDS:
            namespaces.setdefault(namespace, obj)
        if is_default_deny(obj):
            denied.add(namespace)
    return [
        make_violation(
            "default-deny-network-policy",
            first,
            f'namespace "{namespace}" has no default-deny NetworkPolicy; add one with podSelector: {{}}, '
            "policyTypes: [Ingress] and no ingress rules",
        )
        for namespace, first in sorted(namespaces.items())
        if namespace not in denied
    ]


CONTAINER_RESOURCES = ResourceRule(
    "container-resources",
    "Containers must request and limit CPU and memory (and a GPU limit with a GPU request), so the scheduler "
    "places them honestly and one noisy model cannot starve its neighbours.",
    POD_TYPES,
    check_container_resources,
)
DISTINCT_PROBES = ResourceRule(
    "distinct-probes",
    "Long-running containers need readiness and liveness probes that check different things: readiness follows "
    "the model, liveness only the process, or a slow model load restarts the pod forever.",
    LONG_RUNNING_TYPES,
    check_distinct_probes,
)
PINNED_IMAGES = ResourceRule(
    "pinned-images",
    "Images must be pinned (no :latest or untagged; digests in prod) so what was previewed is what runs and a "
    "promotion moves exactly the tested artifact.",
    POD_TYPES,
    check_pinned_images,
)
MIN_REPLICAS = ResourceRule(
    "min-replicas",
    "Endpoints keep at least 2 replicas (3 in prod) so one lost pod or node is not an outage.",
    REPLICATED_TYPES | SCALER_TYPES,
    check_min_replicas,
)
PDB_ALLOWS_EVICTION = ResourceRule(
    "pdb-allows-eviction",
    "A PodDisruptionBudget must allow at least one eviction, or node drains and cluster upgrades block forever.",
    PDB_TYPES,
    check_pdb_allows_eviction,
)
NO_NODE_PORT = ResourceRule(
    "no-node-port-or-load-balancer",
    "Services must not be NodePort or LoadBalancer: that exposes the pods around the Gateway, its auth and its "
    "traffic rules.",
    SERVICE_TYPES,
    check_no_node_port,
)

STACK_REPLICAS = StackRule(
    "min-replicas-stack",
    "A Deployment without replicas runs one pod unless an autoscaler targets it.",
    check_stack_replicas,
)
PDB_PRESENT = StackRule(
    "pdb-present",
    "Every Deployment needs a PodDisruptionBudget that allows eviction, so voluntary disruptions never take all "
    "replicas down at once and never block forever.",
    check_stack_pdbs,
)
DEFAULT_DENY = StackRule(
    "default-deny-network-policy",
    "Every endpoint namespace needs a default-deny ingress NetworkPolicy, so only traffic that a policy allows "
    "(the Gateway) reaches the scoring pods.",
    check_stack_default_deny,
)

RULES: tuple[ResourceRule, ...] = (
    CONTAINER_RESOURCES,
    DISTINCT_PROBES,
    PINNED_IMAGES,
    MIN_REPLICAS,
    PDB_ALLOWS_EVICTION,
    NO_NODE_PORT,
)
STACK_RULES: tuple[StackRule, ...] = (STACK_REPLICAS, PDB_PRESENT, DEFAULT_DENY)


container_resources_validator = resource_validator(CONTAINER_RESOURCES)
distinct_probes_validator = resource_validator(DISTINCT_PROBES)
pinned_images_validator = resource_validator(PINNED_IMAGES)
min_replicas_validator = resource_validator(MIN_REPLICAS)
pdb_allows_eviction_validator = resource_validator(PDB_ALLOWS_EVICTION)
no_node_port_validator = resource_validator(NO_NODE_PORT)
min_replicas_stack_validator = stack_validator(STACK_REPLICAS)
pdb_present_validator = stack_validator(PDB_PRESENT)
default_deny_validator = stack_validator(DEFAULT_DENY)


VALIDATORS = {
    CONTAINER_RESOURCES.name: container_resources_validator,
    DISTINCT_PROBES.name: distinct_probes_validator,
    PINNED_IMAGES.name: pinned_images_validator,
    MIN_REPLICAS.name: min_replicas_validator,
    PDB_ALLOWS_EVICTION.name: pdb_allows_eviction_validator,
    NO_NODE_PORT.name: no_node_port_validator,
}
STACK_VALIDATORS = {
    STACK_REPLICAS.name: min_replicas_stack_validator,
    PDB_PRESENT.name: pdb_present_validator,
    DEFAULT_DENY.name: default_deny_validator,
}
