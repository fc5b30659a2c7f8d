"""A batch endpoint's job API: its objects (ServiceAccount, Role, RoleBinding, Deployment, Service), its
PodDisruptionBudget, its HTTPRoute ``<endpoint>.<domain>/jobs`` and its NetworkPolicies.

The job API (``python -m serving.batch.api --launcher kubernetes``) creates one Job per submission from the
templates of ``batch_job``, projected into its templates folder, and reads the runners' journals on the shared
volume of ``batch_options``.
"""

from __future__ import annotations

from typing import Any

from components.builders.batch_job import template_config_map_name
from components.builders.batch_options import BATCH_MOUNT, OUTPUT_ROOT, BatchOptions
from components.builders.common import (
    EPHEMERAL_STORAGE_SMALL,
    ClusterSettings,
    dns_egress_rule,
    endpoint_labels,
    k8s_name,
    metadata,
    selector_labels,
    with_ephemeral_storage,
)
from components.builders.keys import KEYS_DIR, keys_secret_name
from components.builders.pod_security import restricted_container_security, restricted_pod_security
from contract.keys import SIGNING_KEY_FILE
from contract.serving import FrontendSettings
from endpoints.errors import SpecError
from endpoints.specs import BatchEndpoint

TEMPLATES_DIR = "/etc/endpoints/batch-templates"
API_PORT = 8080
TEMPLATES_HASH_ANNOTATION = "ml-endpoints.io/templates-hash"


def job_api_name(endpoint_name: str) -> str:
    """Name of the job API's Deployment, Service, ServiceAccount, Role and RoleBinding."""
    return k8s_name(endpoint_name, "jobs")


def jobs_uri(endpoint: BatchEndpoint, settings: ClusterSettings) -> str:
    """Where clients submit jobs: ``https://<endpoint>.<domain>/jobs``."""
    return f"{settings.scheme}://{endpoint.name.lower()}.{settings.domain}/jobs"


def build_job_api_route(endpoint: BatchEndpoint, settings: ClusterSettings, private: bool = False) -> dict[str, Any]:
    """HTTPRoute ``<endpoint>.<domain>/jobs`` -> the job API Service.

    Args:
        endpoint: The batch endpoint.
        settings: Stack settings (gateways, domain).
        private: Attach to the private gateway (the stack's ``publicNetworkAccess: disabled``); default False:
            the public one.
    """
    gateway = settings.private_gateway if private else settings.public_gateway
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(k8s_name(endpoint.name), settings.namespace, endpoint_labels(endpoint.name)),
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": gateway.name,
                    "namespace": gateway.namespace,
                }
            ],
            "hostnames": [f"{endpoint.name.lower()}.{settings.domain}"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/jobs"}}],
                    # Weights are traffic percentages in this project (the policy pack checks they sum to 100).
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": job_api_name(endpoint.name), "port": 80, "weight": 100}
                    ],
                }
            ],
        },
    }


def build_job_api_objects(
    endpoint: BatchEndpoint,
    deployment_names: list[str],
    settings: ClusterSettings,
    image: Any,
    options: BatchOptions | None = None,
    replicas: int = 2,
    templates_hash: Any = None,
) -> list[dict[str, Any]]:
    """The job API: ServiceAccount, Role (Jobs in its namespace only), RoleBinding, Deployment, Service.

    Args:
        endpoint: The batch endpoint (auth mode, default deployment).
        deployment_names: Its deployments; their template ConfigMaps are projected into the templates folder
            (optional sources: the API starts before a deployment exists and sees it once created).
        settings: Stack settings.
        image: The job API image (``serving/Dockerfile.batch --target job-api``: the serving image plus the
            ``kubernetes`` client).
        options: Volume and queue options (default :class:`BatchOptions`).
        replicas: Job API replicas (default 2). Any number works: the Kubernetes launcher keeps no state in the
            process (every read goes to the Job objects; job ids are random), so replicas are interchangeable.
        templates_hash: Hash of the deployments' Job templates (:func:`templates_hash`), put on the pod template
            as an annotation so that a changed template (a new runner image) rolls the job API, which reads the
            templates at start; default none.
    """
    if replicas < 1:
        raise SpecError(f"endpoint {endpoint.name}: job API replicas: got {replicas}; at least 1")
    opts = options or BatchOptions()
    name = job_api_name(endpoint.name)
    ns = settings.namespace
    labels = {**endpoint_labels(endpoint.name), "ml-endpoints.io/kind": "batch-job-api"}
    select = {**selector_labels(endpoint.name, "jobs")}
    oidc: dict[str, str] = {}
    if endpoint.auth_mode == "aad_token":
        if not (settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url):
            raise SpecError(
                f"endpoint {endpoint.name}: auth_mode aad_token needs stack config oidcIssuer, oidcAudience and"
                " oidcJwksUrl (ml-endpoints:<key>)"
            )
        oidc = {
            "oidc_issuer": settings.oidc_issuer,
            "oidc_audience": settings.oidc_audience,
            "oidc_jwks_url": settings.oidc_jwks_url,
        }
    # The job API's production layer: the serving contract's settings (short requests: submit, list, status).
    env = FrontendSettings.model_validate(
        {
            "auth_mode": endpoint.auth_mode,
            "keys_dir": KEYS_DIR,
            "token_signing_key_file": f"{KEYS_DIR}/{SIGNING_KEY_FILE}",
            "endpoint_name": endpoint.name,
            **oidc,
            "request_timeout_ms": 30_000,
            "max_concurrent_requests": 16,
            "max_queue_wait_ms": 2_000,
            "max_body_bytes": 1024 * 1024,
            "drain_timeout_s": 10,
        }
    ).to_env()
    args = [
        "--launcher",
        "kubernetes",
        "--templates",
        TEMPLATES_DIR,
        "--endpoint-name",
        endpoint.name,
        "--namespace",
        ns,
        "--owner-deployment",
        name,  # its Jobs go with it: a removed endpoint leaves no job holding the batch volume
        "--output-root",
        f"{OUTPUT_ROOT}/{endpoint.name}",  # jobs of this endpoint write only here (the volume may be shared)
        "--host",
        "0.0.0.0",
        "--port",
        str(API_PORT),
    ]
    if endpoint.defaults.deployment_name:
        args += ["--default-deployment", endpoint.defaults.deployment_name]
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(name, ns, labels),
        "automountServiceAccountToken": True,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(name, ns, labels),
        "rules": [
            {
                "apiGroups": ["batch"],
                "resources": ["jobs"],
                "verbs": ["create", "get", "list", "watch", "patch", "delete"],
            },
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},  # GET /jobs/{id}/logs
            # Its own Deployment only: the owner of the Jobs it creates.
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"], "resourceNames": [name]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(name, ns, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }
    container = {
        "name": "job-api",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "serving.batch.api"],
        "args": args,
        "ports": [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": with_ephemeral_storage(
            {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            EPHEMERAL_STORAGE_SMALL,
        ),
        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
            {"name": "templates", "mountPath": TEMPLATES_DIR, "readOnly": True},
            {"name": "batch", "mountPath": BATCH_MOUNT},
        ],
        "securityContext": restricted_container_security(settings),
    }
    pod_metadata: dict[str, Any] = {"labels": {**labels, **select}}
    if templates_hash is not None:
        pod_metadata["annotations"] = {TEMPLATES_HASH_ANNOTATION: templates_hash}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, ns, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": select},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 5,
            "template": {
                "metadata": pod_metadata,
                "spec": {
                    "serviceAccountName": name,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security(settings),
                    # Longer than the API's own graceful shutdown (uvicorn, 10 s): in-flight requests finish.
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    # Spread replicas over nodes so one node failure never takes the job API down.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": dict(select)},
                        }
                    ],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                        {
                            "name": "keys",
                            "secret": {"secretName": keys_secret_name(endpoint.name), "defaultMode": 0o440},
                        },
                        {
                            "name": "templates",
                            "projected": {
                                "defaultMode": 0o444,
                                "sources": [
                                    {
                                        "configMap": {
                                            "name": template_config_map_name(endpoint.name, d),
                                            "optional": True,
                                        }
                                    }
                                    for d in sorted(deployment_names)
                                ],
                            },
                        },
                        {"name": "batch", "persistentVolumeClaim": {"claimName": opts.volume_claim}},
                    ],
                },
            },
        },
    }
    if settings.image_pull_secret:
        deployment["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": settings.image_pull_secret}]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, ns, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": select,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [service_account, role, binding, deployment, service]


def build_job_api_pdb(endpoint: BatchEndpoint, settings: ClusterSettings) -> dict[str, Any]:
    """PodDisruptionBudget of the job API: one pod at a time may be evicted (drains never block)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(
            job_api_name(endpoint.name),
            settings.namespace,
            {**endpoint_labels(endpoint.name), "ml-endpoints.io/kind": "batch-job-api"},
        ),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(endpoint.name, "jobs")},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_job_api_ingress_policy(
    endpoint: BatchEndpoint, settings: ClusterSettings, private: bool = False
) -> dict[str, Any]:
    """NetworkPolicy: the job API accepts traffic only from its gateway's namespace (and monitoring).

    The namespace denies all ingress by default; runner pods listen on nothing and get no ingress rule.
    """
    gateway = settings.private_gateway if private else settings.public_gateway
    peers = settings.ingress_peers(gateway)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            k8s_name(endpoint.name, "jobs-ingress"), settings.namespace, endpoint_labels(endpoint.name)
        ),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(endpoint.name, "jobs")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": "http"}]}],
        },
    }


API_SERVER_PORTS = (443, 6443)  # the kubernetes Service's port, and the API server's own (policies apply after DNAT)


def build_job_api_egress_policy(endpoint: BatchEndpoint, settings: ClusterSettings) -> dict[str, Any]:
    """NetworkPolicy: the job API's pods may reach only the cluster DNS, the API server (TCP 443/6443, at
    ``api_server_cidrs`` when the stack sets them) and the stack's ``egressAllowCidrs`` (an OIDC provider's keys);
    everything else is denied. It reads the runners' journals on the mounted volume, not over the network."""
    api_server: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": p} for p in API_SERVER_PORTS]}
    if settings.api_server_cidrs:
        api_server = {"to": [{"ipBlock": {"cidr": c}} for c in settings.api_server_cidrs], **api_server}
    egress = [dns_egress_rule(), api_server]
    if settings.egress_allow_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in settings.egress_allow_cidrs]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            k8s_name(endpoint.name, "jobs-egress"), settings.namespace, endpoint_labels(endpoint.name)
        ),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(endpoint.name, "jobs")},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }
