"""Allowed fixtures: Kubernetes objects (dicts) that pass every rule, in prod. Tests derive the failures from them."""

from __future__ import annotations

import copy
from typing import Any

NAMESPACE = "ml"
DIGEST = "sha256:" + "a" * 64
IMAGE = f"registry.example.com/cars/blue:1.4.2@{DIGEST}"


def deployment(name: str = "cars-blue", replicas: int | None = 3) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "endpoints.ml/endpoint": "cars"}
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "scorer",
                            "image": IMAGE,
                            "env": [
                                {"name": "ENDPOINTS_AUTH_MODE", "value": "key"},
                                {"name": "ENDPOINTS_KEYS_DIR", "value": "/var/run/endpoints/keys"},
                                {"name": "ENDPOINTS_TOKEN_SIGNING_KEY_FILE", "value": "/var/run/endpoints/signing"},
                            ],
                            "resources": {
                                "requests": {"cpu": "850m", "memory": "3046Mi"},
                                "limits": {"cpu": "1000m", "memory": "3584Mi"},
                            },
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 5001}},
                            "livenessProbe": {"httpGet": {"path": "/", "port": 5001}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    if replicas is not None:
        obj["spec"]["replicas"] = replicas
    return obj


def gpu_deployment() -> dict[str, Any]:
    obj = deployment("cars-gpu")
    pod = obj["spec"]["template"]["spec"]
    res = pod["containers"][0]["resources"]
    res["requests"]["nvidia.com/gpu"] = "1"
    res["limits"]["nvidia.com/gpu"] = "1"
    pod["nodeSelector"] = {"ml-endpoints.io/pool": "gpu-t4"}
    pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return obj


def hpa(target: str = "cars-blue", min_replicas: int | None = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": target, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }
    if min_replicas is not None:
        obj["spec"]["minReplicas"] = min_replicas
    return obj


def scaled_object(target: str = "cars-blue", min_count: int | None = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": target, "namespace": NAMESPACE},
        "spec": {"scaleTargetRef": {"name": target}, "triggers": []},
    }
    if min_count is not None:
        obj["spec"]["minReplicaCount"] = min_count
    return obj


def pdb(target: str = "cars-blue", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": target, "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": target}}, **(spec or {"maxUnavailable": 1})},
    }


def service(name: str = "cars-blue", service_type: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"port": 80, "targetPort": 5001}]},
    }
    if service_type is not None:
        obj["spec"]["type"] = service_type
    return obj


def default_deny(namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def route(
    weights: dict[str, int] | None = None,
    mirror: dict[str, Any] | None = None,
    gateway: str = "private",
) -> dict[str, Any]:
    weights = {"cars-blue": 100, "cars-green": 0} if weights is None else weights
    default_rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in weights.items()],
    }
    if mirror is not None:
        default_rule["filters"] = [{"type": "RequestMirror", "requestMirror": mirror}]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "cars", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": gateway, "namespace": "gateways"}],
            "hostnames": ["cars.ml.example.com"],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "azureml-model-deployment", "value": n}]}],
                    "backendRefs": [{"name": n, "port": 80}],
                }
                for n in weights
            ]
            + [default_rule],
        },
    }


def configmap(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cars-settings", "namespace": NAMESPACE},
        "data": dict(data) or {"ENDPOINTS_REQUEST_TIMEOUT_MS": "5000"},
    }


def stack() -> list[dict[str, Any]]:
    """A whole allowed stack: two deployments (one on GPU), their PDBs, scalers, services, route, policies."""
    return [
        deployment("cars-blue"),
        gpu_deployment(),
        pdb("cars-blue"),
        pdb("cars-gpu", minAvailable=2),
        hpa("cars-blue"),
        service("cars-blue"),
        service("cars-gpu"),
        route(
            {"cars-blue": 100, "cars-gpu": 0}, mirror={"backendRef": {"name": "cars-gpu", "port": 80}, "percent": 10}
        ),
        default_deny(),
        configmap(),
    ]


def clone(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)


def container(obj: dict[str, Any]) -> dict[str, Any]:
    """The first container of a workload fixture (for mutation in tests)."""
    return obj["spec"]["template"]["spec"]["containers"][0]


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def crossguard_findings(objects: list[dict[str, Any]], config: dict[str, Any]) -> list[tuple[str, str]]:
    """(policy, message) of every CrossGuard validator of the pack over ``objects``, as the engine would call them:
    props without apiVersion/kind behind pulumi-policy's unknown-checking proxy, a collecting report_violation."""
    from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
    from pulumi_policy.proxy import unknown_checking_proxy

    from policies.rules import STACK_VALIDATORS, VALIDATORS
    from policies.rules.common import type_token

    opts = PolicyResourceOptions(False, [], None, [], None, [], None)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    resources = []
    for i, obj in enumerate(objects):
        token = type_token(obj)
        props = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        for name, validator in VALIDATORS.items():
            args = ResourceValidationArgs(
                token, unknown_checking_proxy(copy.deepcopy(props)), f"urn:{i}", f"r{i}", opts, None, dict(config)
            )
            validator(args, lambda message, urn=None, name=name: found.append((name, message)))
        resources.append(
            PolicyResource(token, unknown_checking_proxy(props), f"urn:{i}", f"r{i}", opts, None, None, [], {})
        )
    for name, validator in STACK_VALIDATORS.items():
        validator(
            StackValidationArgs(resources, dict(config)),
            lambda message, urn=None, name=name: found.append((name, message)),
        )
    return found
