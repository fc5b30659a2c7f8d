"""A stand-in for kube-scheduler when the toolchain has none: binds pending pods to fitting nodes.

kwok fakes the kubelet (it runs pods bound to its nodes) but schedules nothing, and a pod with no node never turns
Ready. When ``kube-scheduler`` is in the toolchain, ``endpoints cluster up`` runs it and this module is unused. The
stand-in applies the predicates this project's objects depend on, and nothing else: the node is Ready and
schedulable, its labels satisfy the pod's ``nodeSelector`` and required node affinity, the pod tolerates every
``NoSchedule``/``NoExecute`` taint, and the pod's requests (CPU, memory, GPUs, any extended resource, pod count)
fit in what the node has left. Among fitting nodes it picks the least loaded (CPU share), which spreads replicas.
No preemption, no scoring plugins, no topology spread (the project's spread constraints are ``ScheduleAnyway``).

Run as ``python -m endpoints.cluster.binder --kubeconfig FILE`` (``cluster up`` does; SIGTERM stops it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("endpoints.cluster.binder")
SCHEDULER_NAME = "default-scheduler"
POLL_S = 0.5


def parse_quantity(value: str | int | float) -> float:
    """A resource quantity (``500m``, ``28Gi``, ``4``) as a number, by the Kubernetes client's parser."""
    from kubernetes.utils.quantity import parse_quantity as parse

    return float(parse(value))


def tolerates(tolerations: list[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (the API's matching rules)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if not t.get("key"):
            if op == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if op == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expression_holds(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels:
        left, right = int(labels[key]), int(values[0])
        return left > right if op == "Gt" else left < right
    return False


def selects(pod_spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """The pod's ``nodeSelector`` and required node affinity both hold for a node with ``labels``."""
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(all(_expression_holds(e, labels) for e in term.get("matchExpressions") or []) for term in terms)


def pod_requests(pod_spec: Mapping[str, Any]) -> dict[str, float]:
    """Requests of a pod as the scheduler counts them: the sum over containers, at least the largest init container,
    plus the pod overhead; a limit with no request counts as the request (the API defaults it so)."""

    def of(container: Mapping[str, Any]) -> dict[str, float]:
        res = container.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return {k: parse_quantity(v) for k, v in merged.items()}

    total: dict[str, float] = {}
    for c in pod_spec.get("containers") or []:
        for k, v in of(c).items():
            total[k] = total.get(k, 0.0) + v
    for c in pod_spec.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total.get(k, 0.0), v)
    for k, v in (pod_spec.get("overhead") or {}).items():
        total[k] = total.get(k, 0.0) + parse_quantity(v)
    return total


def node_ready(node: Mapping[str, Any]) -> bool:
    """Ready condition True and not cordoned."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def choose_node(
    pod: Mapping[str, Any], nodes: list[Mapping[str, Any]], used: Mapping[str, dict[str, float]]
) -> str | None:
    """The least-loaded node that fits ``pod``, or None.

    Args:
        pod: The pending pod (a dict as the API returns it).
        nodes: Every node.
        used: Node name -> requests of the pods already bound there (including ``"pods"``: their count).
    """
    spec = pod.get("spec") or {}
    want = pod_requests(spec)
    best: tuple[float, str] | None = None
    for node in nodes:
        name = node["metadata"]["name"]
        if not node_ready(node) or not selects(spec, node["metadata"].get("labels") or {}):
            continue
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") != "PreferNoSchedule"]
        if not all(tolerates(spec.get("tolerations") or [], t) for t in taints):
            continue
        alloc = {k: parse_quantity(v) for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()}
        have = used.get(name, {})
        if have.get("pods", 0) + 1 > alloc.get("pods", 110):
            continue
        if any(v > 0 and have.get(k, 0.0) + v > alloc.get(k, 0.0) for k, v in want.items()):
            continue
        load = have.get("cpu", 0.0) / alloc["cpu"] if alloc.get("cpu") else 0.0
        if best is None or (load, name) < best:
            best = (load, name)
    return best[1] if best else None


def usage(pods: list[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Node name -> summed requests (and ``pods`` count) of the bound pods that still hold their resources."""
    used: dict[str, dict[str, float]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        acc = used.setdefault(node, {"pods": 0.0})
        acc["pods"] += 1
        for k, v in pod_requests(pod["spec"]).items():
            acc[k] = acc.get(k, 0.0) + v
    return used


def run(kubeconfig: str, stop: threading.Event) -> None:
    """Bind pending pods until ``stop`` is set."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)
    while not stop.is_set():
        try:
            _bind_pending(core, api_client)
        except Exception as e:  # the API server restarting, a conflict: try again on the next round
            log.warning("binder round failed: %s", e)
        stop.wait(POLL_S)


def _bind_pending(core: Any, api_client: Any) -> None:
    pending = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=,status.phase=Pending").items
    if not pending:
        return
    serialize = api_client.sanitize_for_serialization
    nodes = [serialize(n) for n in core.list_node().items]
    bound = [serialize(p) for p in core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=").items]
    used = usage(bound)
    for pod_obj in sorted(pending, key=lambda p: p.metadata.creation_timestamp):
        pod = serialize(pod_obj)
        if pod["metadata"].get("deletionTimestamp") or (pod["spec"].get("schedulerName") or SCHEDULER_NAME) != (
            SCHEDULER_NAME
        ):
            continue
        node = choose_node(pod, nodes, used)
        if node is None:
            continue
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod["metadata"]["name"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        # The client cannot deserialise a Binding response (a known client bug): read none.
        core.create_namespaced_pod_binding(
            pod["metadata"]["name"], pod["metadata"]["namespace"], body, _preload_content=False
        )
        acc = used.setdefault(node, {"pods": 0.0})
        acc["pods"] += 1
        for k, v in pod_requests(pod["spec"]).items():
            acc[k] = acc.get(k, 0.0) + v
        log.info("bound %s/%s to %s", pod["metadata"]["namespace"], pod["metadata"]["name"], node)


def main(argv: list[str] | None = None) -> None:
    """``python -m endpoints.cluster.binder --kubeconfig FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(args.kubeconfig, stop)


if __name__ == "__main__":
    main()
