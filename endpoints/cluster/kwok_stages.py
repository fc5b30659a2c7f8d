"""kwok's behaviour for the fake nodes: its ``Stage`` objects (kwok 0.8 runs standalone only with stages in its
``--config``; kwokctl would write them).

Five stages, written for what this project needs (kwok's template functions: ``Now``, ``Quote``, ``YAML``,
``NodeIPsWith``, ``PodIPsWith``):

* ``node-ready``: a fake node turns Ready, keeping the capacity ``cluster up`` gave it, with kwok's own server as its
  kubelet endpoint (InternalIP ``NodeIP`` and port ``NodePort``: kwok's ``--node-ip``/``--node-port``), where the API
  server reads pod logs;
* ``node-heartbeat``: every 20 s its Ready condition is renewed (else the node lifecycle controller would taint it
  unreachable and evict its pods);
* ``pod-ready``: a pod bound to a fake node is Running with every container ready, with a pod IP (so Services get
  endpoints and ``pulumi up`` sees rollouts finish);
* ``pod-complete``: a running pod of a Job succeeds (exit code 0), so Jobs complete;
* ``pod-delete``: a deleted pod goes away at once (no kubelet to finish the grace period).
"""

from __future__ import annotations

from typing import Any

import yaml

_STAGE_API = "kwok.x-k8s.io/v1alpha1"
_READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'

_NODE_CONDITIONS = """\
{{ $now := Now }}
conditions:
- type: Ready
  status: "True"
  reason: KubeletReady
  message: kwok fake kubelet
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ or .metadata.creationTimestamp $now | Quote }}
"""

_NODE_READY = (
    _NODE_CONDITIONS
    + """\
addresses:
- {type: InternalIP, address: {{ NodeIP | Quote }}}
- {type: Hostname, address: {{ .metadata.name | Quote }}}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ NodePort }}
allocatable:
{{ YAML .status.allocatable 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: kwok
  containerRuntimeVersion: kwok
  kernelVersion: kwok
  kubeProxyVersion: kwok
  osImage: kwok
  machineID: ""
  systemUUID: ""
  bootID: ""
phase: Running
"""
)

_POD_READY = """\
{{ $now := Now }}
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
{{ end }}
{{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) \
( or .metadata.namespace "" ) }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""

_POD_COMPLETE = """\
{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}
{{ end }}
phase: Succeeded
"""


def _stage(name: str, kind: str, expressions: list[dict[str, Any]], nxt: dict[str, Any], **extra: Any) -> dict:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": expressions},
        "next": nxt,
        **extra,
    }
    return {"apiVersion": _STAGE_API, "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def stages() -> list[dict[str, Any]]:
    """The five stages (see the module docstring)."""
    not_deleted = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
    return [
        _stage(
            "node-ready",
            "Node",
            [{"key": _READY, "operator": "NotIn", "values": ["True"]}],
            {"statusTemplate": _NODE_READY},
        ),
        _stage(
            "node-heartbeat",
            "Node",
            [{"key": _READY, "operator": "In", "values": ["True"]}],
            {"statusTemplate": _NODE_CONDITIONS},
            delay={"durationMilliseconds": 20000, "jitterDurationMilliseconds": 5000},
            immediateNextStage=True,
        ),
        _stage(
            "pod-ready",
            "Pod",
            [not_deleted, {"key": ".status.phase", "operator": "In", "values": ["Pending"]}],
            {"statusTemplate": _POD_READY},
        ),
        _stage(
            "pod-complete",
            "Pod",
            [
                not_deleted,
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": _POD_COMPLETE},
        ),
        _stage("pod-delete", "Pod", [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}], {"delete": True}),
    ]


def config_yaml() -> str:
    """kwok's ``--config`` file: the stages as a YAML stream."""
    return yaml.safe_dump_all(stages(), sort_keys=False)
