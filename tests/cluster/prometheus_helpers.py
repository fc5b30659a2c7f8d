"""Prometheus for the cluster tests: the scrape job the Prometheus Operator renders from a PodMonitor, with static
targets carrying the pod role's discovery labels (kwok's pods run no container, so local serving processes stand
in for them), and the readiness poll of the targets."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import httpx


def _sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _relabel(r: dict[str, Any]) -> dict[str, Any]:
    """A PodMonitor relabeling (camelCase CRD fields) as a Prometheus relabel_config."""
    names = {
        "sourceLabels": "source_labels",
        "targetLabel": "target_label",
        "action": "action",
        "regex": "regex",
        "replacement": "replacement",
        "separator": "separator",
        "modulus": "modulus",
    }
    return {names[k]: (v.lower() if k == "action" else v) for k, v in r.items()}


def scrape_job(monitor: dict[str, Any], targets: list[dict[str, Any]], interval: str) -> dict[str, Any]:
    """The scrape job the Prometheus Operator (v0.85, ``generatePodMonitorConfig``) renders for ``monitor``, with
    ``targets`` (static, carrying the service-discovery labels of the pod role) in place of Kubernetes discovery.

    The relabelling is the operator's, in its order: drop finished pods, keep the selector's pods and the named
    port, ``namespace``/``container``/``pod`` from the pod, ``job``, ``endpoint`` = the port name, and last the
    PodMonitor's own relabelings (which overwrite ``endpoint`` with the pod's endpoint label).
    """
    ep = monitor["spec"]["podMetricsEndpoints"][0]
    meta = monitor["metadata"]
    relabel: list[dict[str, Any]] = [
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}
    ]
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        relabel.append(
            {
                "action": "keep",
                "regex": f"({value});true",
                "source_labels": [
                    f"__meta_kubernetes_pod_label_{_sanitize(key)}",
                    f"__meta_kubernetes_pod_labelpresent_{_sanitize(key)}",
                ],
            }
        )
    relabel += [
        {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": ep["port"]},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
        {"target_label": "endpoint", "replacement": ep["port"]},
        *(_relabel(r) for r in ep.get("relabelings", [])),
    ]
    return {
        "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/0",
        "scrape_interval": interval,
        "metrics_path": ep.get("path", "/metrics"),
        "static_configs": targets,
        "relabel_configs": relabel,
    }


def pod_targets(pod: dict[str, Any], address: str) -> list[dict[str, Any]]:
    """The pod role's targets of one pod (one per container port), its discovery labels, scraped at ``address``."""
    labels = {
        "__meta_kubernetes_namespace": pod["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": pod["metadata"]["name"],
        "__meta_kubernetes_pod_phase": pod.get("status", {}).get("phase", ""),
    }
    for key, value in (pod["metadata"].get("labels") or {}).items():
        labels[f"__meta_kubernetes_pod_label_{_sanitize(key)}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{_sanitize(key)}"] = "true"
    out = []
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or ():
            out.append(
                {
                    "targets": [address],
                    "labels": {
                        **labels,
                        "__meta_kubernetes_pod_container_name": container["name"],
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                    },
                }
            )
    return out


def targets_up(url: str) -> int:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        body = httpx.get(f"{url}/api/v1/query", params={"query": "sum(up)"}, timeout=5, trust_env=False).json()
        result = body["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0
    return 0
