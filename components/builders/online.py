"""Pure builders for online endpoints and deployments: validated specs in, Kubernetes objects (camelCase dicts) out.

Nothing here imports ``pulumi`` or touches the network: the components, the offline plan, the policy tests and
the docs all call these functions. Values that only exist at deploy time (keys, a freshly built image) are
passed in as opaque values: the components pass Pulumi outputs, the offline plan passes placeholders.

Azure ML's kubernetes online deployment fields map as follows (see ``docs/kubernetes-mapping.md``):
``instance_type``/``resources`` -> container requests/limits (+ GPU node selector and toleration),
``instance_count``/``scale_settings`` -> ``replicas`` or an HPA / KEDA ScaledObject, ``request_settings`` ->
the ``ENDPOINTS_*`` variables of the serving process, probes -> ``livenessProbe``/``readinessProbe``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from components.builders.byoc import custom_server, custom_server_deployment
from components.builders.common import (
    DEPLOYMENT_HEADER,
    ENDPOINT_LABEL,
    EPHEMERAL_STORAGE_WORKLOAD,
    SERVING_PORT,
    ClusterSettings,
    GatewayRef,
    add_optional_pod_fields,
    deployment_labels,
    dns_egress_rule,
    endpoint_labels,
    http_probe,
    k8s_name,
    metadata,
    remote_model_uri,
    selector_labels,
    spec_error,
    with_ephemeral_storage,
)
from components.builders.compute import pool_scheduling
from components.builders.keys import KEYS_DIR, build_keys_secret, keys_secret_name
from components.builders.model_fetch import fetch_model_init_container
from components.builders.monitoring import monitoring_objects
from components.builders.pod_security import restricted_container_security, restricted_pod_security
from contract.keys import ALL_KEY_FILES, SIGNING_KEY_FILE
from contract.serving import ENV_VARS, DataCollectorSettings, FrontendSettings
from endpoints.catalog import InstanceType
from endpoints.errors import SpecError
from endpoints.images import APP_ROOT, azureml_model_dir
from endpoints.specs import OnlineDeployment, OnlineEndpoint, TargetUtilizationScaleSettings
from endpoints.specs.online import primary_deployment

SERVICE_PORT = 80
# Gateway API allows 16 rules per HTTPRoute: one pin rule per deployment plus the default rule.
MAX_DEPLOYMENTS_PER_ENDPOINT = 15
# Seconds the pod keeps serving after it is marked terminating, so the gateway stops sending to it first.
PRESTOP_SLEEP_S = 5
# Metric the KEDA request-rate trigger reads (exported by the serving process on /metrics).
REQUEST_METRIC = "endpoints_requests_total"
# Where a deployment with a data_collector writes its JSON lines when they go to a volume (emptyDir or the stack's
# PersistentVolumeClaim), under <endpoint>/<deployment>/.
DATA_COLLECTOR_DIR = "/var/lib/endpoints/data-collector"
DATA_COLLECTOR_EMPTYDIR_SIZE = "1Gi"
# The production-layer variables (the serving contract); the Deployment sets no other ENDPOINTS_* names.
ENDPOINTS_ENV_VARS = tuple(ENV_VARS)


# ----------------------------------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class EndpointNames:
    """Kubernetes names of an endpoint's own objects."""

    secret: str
    route: str
    ingress_policy: str


def endpoint_names(endpoint_name: str) -> EndpointNames:
    """Names of the endpoint-level objects (Secret, HTTPRoute, ingress NetworkPolicy)."""
    return EndpointNames(
        secret=keys_secret_name(endpoint_name),
        route=k8s_name(endpoint_name),
        ingress_policy=k8s_name(endpoint_name, "ingress"),
    )


def deployment_object_name(endpoint_name: str, deployment_name: str) -> str:
    """Name of a deployment's Deployment, Service, HPA, PDB (one name per deployment, <= 63 characters)."""
    return k8s_name(endpoint_name, deployment_name)


def check_unique_names(pairs: list[tuple[str, str]]) -> None:
    """Fail when two (endpoint, deployment) pairs map to the same object name (``a-b``/``c`` vs ``a``/``b-c``).

    Raises:
        SpecError: naming both pairs and the shared name.
    """
    seen: dict[str, tuple[str, str]] = {}
    for ep, dep in pairs:
        name = deployment_object_name(ep, dep)
        if name in seen and seen[name] != (ep, dep):
            other = seen[name]
            raise SpecError(
                f"deployment {ep}/{dep}: object name {name!r} is also the name of {other[0]}/{other[1]};"
                " rename one of the endpoints or deployments"
            )
        seen[name] = (ep, dep)


def host_name(endpoint: OnlineEndpoint, settings: ClusterSettings) -> str:
    """``<endpoint>.<domain>``, lower case (DNS names are case-insensitive; Gateway API wants lower case)."""
    return f"{endpoint.name.lower()}.{settings.domain}"


def gateway_for(endpoint: OnlineEndpoint, settings: ClusterSettings) -> GatewayRef:
    """The private gateway for ``public_network_access: disabled``, else the public one."""
    return settings.private_gateway if endpoint.public_network_access == "disabled" else settings.public_gateway


def scoring_path(deployment: OnlineDeployment) -> str:
    """Path live traffic is scored on (:attr:`endpoints.specs.OnlineDeployment.scoring_path`)."""
    return deployment.scoring_path


def _primary_deployment(endpoint: OnlineEndpoint, deployments: list[OnlineDeployment]) -> OnlineDeployment | None:
    # The one taking most live traffic answers a plain call; ties and no traffic fall back to name order.
    by_name = {d.name: d for d in deployments}
    name = primary_deployment(endpoint.traffic, sorted(by_name))
    return by_name[name] if name is not None else None


def scoring_uri(endpoint: OnlineEndpoint, deployments: list[OnlineDeployment], settings: ClusterSettings) -> str:
    """Azure's ``scoring_uri``: ``https://<endpoint>.<domain>/score`` (custom containers: their scoring path)."""
    primary = _primary_deployment(endpoint, deployments)
    path = scoring_path(primary) if primary is not None else "/score"
    return f"{settings.scheme}://{host_name(endpoint, settings)}{path}"


def swagger_uri(endpoint: OnlineEndpoint, deployments: list[OnlineDeployment], settings: ClusterSettings) -> str:
    """Azure's ``openapi_uri``: ``.../swagger.json``; empty when the primary deployment is a custom container."""
    primary = _primary_deployment(endpoint, deployments)
    if primary is not None and (primary.is_custom_container or primary.is_triton):
        return ""
    return f"{settings.scheme}://{host_name(endpoint, settings)}/swagger.json"


# -------------------------------------------------------------------------------------------------------- endpoint


def _backend_ref(endpoint_name: str, deployment_name: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "group": "",
        "kind": "Service",
        "name": deployment_object_name(endpoint_name, deployment_name),
        "port": SERVICE_PORT,
    }
    if weight is not None:
        ref["weight"] = weight
    return ref


def _duration(seconds: int) -> str:
    # Gateway API durations (GEP-2257): at most 5 digits per unit.
    return f"{seconds}s" if seconds < 100_000 else f"{math.ceil(seconds / 60)}m"


def build_http_route(
    endpoint: OnlineEndpoint, deployments: list[OnlineDeployment], settings: ClusterSettings
) -> dict[str, Any]:
    """The endpoint's ``HTTPRoute`` (gateway.networking.k8s.io/v1).

    One rule per deployment matches the ``azureml-model-deployment`` header (Gateway API ranks header matches
    above the catch-all, so a pinned request never falls through). The default rule splits live traffic by
    ``traffic`` weight and copies ``mirror_traffic`` percent of it to the mirror target with a ``RequestMirror``
    filter (pinned requests are never mirrored). With no live traffic there is no default rule: unpinned
    requests get the gateway's 404, as in local mode.

    Raises:
        SpecError: more deployments than a route holds, or traffic/mirror naming a deployment that does not exist.
    """
    names = sorted(d.name for d in deployments)
    if len(names) > MAX_DEPLOYMENTS_PER_ENDPOINT:
        raise spec_error(
            endpoint,
            "",
            f"endpoint {endpoint.name}: got {len(names)} deployments; an HTTPRoute holds at most"
            f" {MAX_DEPLOYMENTS_PER_ENDPOINT} (one rule each plus the default rule)",
        )
    for field, table in (("traffic", endpoint.traffic), ("mirror_traffic", endpoint.mirror_traffic)):
        for dep in table:
            if dep not in names:
                raise spec_error(endpoint, f"{field}.{dep}", f"no deployment named {dep!r}; deployments: {names}")
    # The gateway must wait at least as long as the slowest deployment may take (queue wait + run timeout + 5 s).
    slowest_s = max(
        (frontend_settings(d).upstream_timeout_s for d in deployments),
        default=FrontendSettings.model_validate({}).upstream_timeout_s,
    )
    timeouts = {"request": _duration(math.ceil(slowest_s))}
    catch_all = {"path": {"type": "PathPrefix", "value": "/"}}
    rules: list[dict[str, Any]] = [
        {
            "matches": [{**catch_all, "headers": [{"type": "Exact", "name": DEPLOYMENT_HEADER, "value": name}]}],
            "backendRefs": [_backend_ref(endpoint.name, name)],
            "timeouts": timeouts,
        }
        for name in names
    ]
    live = [(name, endpoint.traffic.get(name, 0)) for name in names if endpoint.traffic.get(name, 0) > 0]
    if live:
        default_rule: dict[str, Any] = {
            "matches": [catch_all],
            "backendRefs": [_backend_ref(endpoint.name, name, weight) for name, weight in live],
            "timeouts": timeouts,
        }
        mirrors = [(name, pct) for name, pct in sorted(endpoint.mirror_traffic.items()) if pct > 0]
        if mirrors:
            default_rule["filters"] = [
                {
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": _backend_ref(endpoint.name, name), "percent": pct},
                }
                for name, pct in mirrors
            ]
        rules.append(default_rule)
    gateway = gateway_for(endpoint, settings)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(endpoint_names(endpoint.name).route, settings.namespace, endpoint_labels(endpoint.name)),
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": gateway.name,
                    "namespace": gateway.namespace,
                }
            ],
            "hostnames": [host_name(endpoint, settings)],
            "rules": rules,
        },
    }


def build_ingress_policy(endpoint: OnlineEndpoint, settings: ClusterSettings) -> dict[str, Any]:
    """NetworkPolicy: the endpoint's pods accept traffic only from the gateway's namespace (and monitoring).

    ``public_network_access: disabled`` endpoints admit only the private gateway's namespace.
    """
    gateway = gateway_for(endpoint, settings)
    peers = settings.ingress_peers(gateway)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            endpoint_names(endpoint.name).ingress_policy, settings.namespace, endpoint_labels(endpoint.name)
        ),
        "spec": {
            "podSelector": {"matchLabels": {ENDPOINT_LABEL: endpoint.name}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": "http"}]}],
        },
    }


def build_endpoint_objects(
    endpoint: OnlineEndpoint,
    deployments: list[OnlineDeployment],
    settings: ClusterSettings,
    keys: tuple[Any, Any, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every endpoint-level object: Secret, HTTPRoute, ingress NetworkPolicy.

    Args:
        keys: (primary, secondary, token signing key); default placeholders.
    """
    secret = build_keys_secret(endpoint, settings, *keys) if keys else build_keys_secret(endpoint, settings)
    objs = [secret, build_http_route(endpoint, deployments, settings), build_ingress_policy(endpoint, settings)]
    return objs + build_monitoring_objects(endpoint, settings)


def build_monitoring_objects(endpoint: OnlineEndpoint, settings: ClusterSettings) -> list[dict[str, Any]]:
    """PodMonitor, PrometheusRule and dashboard ConfigMap when the stack's ``monitoring`` setting is on."""
    return monitoring_objects(endpoint.name, settings.namespace) if settings.monitoring else []


# ------------------------------------------------------------------------------------------------------ deployment


def drain_timeout_s(deployment: OnlineDeployment) -> int:
    """Drain time on SIGTERM: the default 30 s, longer when one request may take longer than that."""
    rs = deployment.request_settings
    return FrontendSettings.drain_for(rs.request_timeout_ms, rs.max_queue_wait_ms)


def frontend_settings(deployment: OnlineDeployment, **values: object) -> FrontendSettings:
    """The production-layer settings of a deployment's serving process (``values`` add the endpoint's auth inputs).

    Built with ``model_validate`` so that no variable of the process running the builder leaks in.
    """
    rs = deployment.request_settings
    return FrontendSettings.model_validate(
        {
            **values,
            "request_timeout_ms": rs.request_timeout_ms,
            "max_concurrent_requests": rs.max_concurrent_requests_per_instance,
            "max_queue_wait_ms": rs.max_queue_wait_ms,
            "drain_timeout_s": drain_timeout_s(deployment),
        }
    )


def data_collector_settings(
    endpoint: OnlineEndpoint, deployment: OnlineDeployment, settings: ClusterSettings
) -> DataCollectorSettings | None:
    """Payload logging of a deployment (None without an enabled ``data_collector`` collection).

    The store: a collection's own ``data.path`` (folder or fsspec URL), else the stack's ``dataCollectorUrl``,
    else the volume at :data:`DATA_COLLECTOR_DIR` (see :func:`data_collector_volume`), each under
    ``<endpoint>/<deployment>``.
    """
    collector = deployment.data_collector
    if collector is None:
        return None
    base = settings.data_collector_url.rstrip("/") if settings.data_collector_url else DATA_COLLECTOR_DIR
    return collector.settings(f"{base}/{endpoint.name}/{deployment.name}")


def data_collector_volume(deployment: OnlineDeployment, settings: ClusterSettings) -> dict[str, Any] | None:
    """The volume the lines are written to: the stack's PersistentVolumeClaim or an emptyDir; None when the
    deployment collects nothing or writes to a URL."""
    collector = deployment.data_collector
    if collector is None or not collector.enabled or collector.store() is not None or settings.data_collector_url:
        return None
    if settings.data_collector_claim:
        return {"name": "data-collector", "persistentVolumeClaim": {"claimName": settings.data_collector_claim}}
    return {"name": "data-collector", "emptyDir": {"sizeLimit": DATA_COLLECTOR_EMPTYDIR_SIZE}}


def termination_grace_period_s(deployment: OnlineDeployment) -> int:
    """Above the server's drain timeout plus the preStop pause, so Kubernetes never kills a draining server."""
    return PRESTOP_SLEEP_S + drain_timeout_s(deployment) + 10


def container_resources(deployment: OnlineDeployment, instance: InstanceType) -> dict[str, dict[str, str]]:
    """Requests and limits: the deployment's ``resources`` when set, else the instance type's.

    Missing limits are filled so every container has CPU and memory limits: memory limit = memory request
    (memory is not compressible), GPU limit = GPU request (extended resources need request == limit).
    """
    if deployment.resources is None or not (deployment.resources.requests or deployment.resources.limits):
        return instance.kubernetes_resources()
    requests: dict[str, str] = {str(k): v for k, v in deployment.resources.requests.items()}
    limits: dict[str, str] = {str(k): v for k, v in deployment.resources.limits.items()}
    base = instance.kubernetes_resources()
    for key in ("cpu", "memory"):
        if key not in requests and key not in limits:
            requests[key] = base["requests"][key]
            limits[key] = base["limits"][key]
        elif key not in limits:
            limits[key] = requests[key]
        elif key not in requests:
            requests[key] = limits[key]
    gpu = "nvidia.com/gpu"
    if gpu in requests or gpu in limits:
        value = limits.get(gpu, requests.get(gpu))
        if gpu in requests and gpu in limits and requests[gpu] != limits[gpu]:
            raise spec_error(
                deployment,
                "resources",
                f"nvidia.com/gpu request {requests[gpu]!r} != limit {limits[gpu]!r}; GPUs are whole devices,"
                " set them equal",
            )
        requests[gpu] = limits[gpu] = str(value)
    elif instance.is_gpu:
        requests[gpu] = limits[gpu] = str(instance.gpu_count)
    return {"requests": requests, "limits": limits}


def _gpu_count(resources: dict[str, dict[str, str]]) -> int:
    return int(float(resources["limits"].get("nvidia.com/gpu", "0")))


def serving_env(
    endpoint: OnlineEndpoint, deployment: OnlineDeployment, settings: ClusterSettings
) -> list[dict[str, str]]:
    """Environment of the serving container: the ``ENDPOINTS_*`` production settings, Azure's ``AZUREML_*``
    scoring variables, then the deployment's own ``environment_variables`` (which cannot override ours)."""
    rs = deployment.request_settings
    auth: dict[str, object] = {
        "auth_mode": endpoint.auth_mode,
        "keys_dir": KEYS_DIR,
        "token_signing_key_file": f"{KEYS_DIR}/{SIGNING_KEY_FILE}",
        "endpoint_name": endpoint.name,
    }
    if endpoint.auth_mode == "aad_token":
        missing = [
            key
            for key, value in (
                ("oidcIssuer", settings.oidc_issuer),
                ("oidcAudience", settings.oidc_audience),
                ("oidcJwksUrl", settings.oidc_jwks_url),
            )
            if not value
        ]
        if missing:
            raise spec_error(
                endpoint, "auth_mode", f"aad_token needs stack config {', '.join(missing)} (ml-endpoints:<key>)"
            )
        auth.update(
            oidc_issuer=settings.oidc_issuer, oidc_audience=settings.oidc_audience, oidc_jwks_url=settings.oidc_jwks_url
        )
    env = frontend_settings(deployment, **auth).to_env()
    env.update(rs.batching_env())  # opt-in adaptive batching (serving.batching)
    collector = data_collector_settings(endpoint, deployment, settings)
    if collector is not None:
        env.update(collector.to_env())  # payload logging (serving.frontend.collector)
    azure: dict[str, str] = {
        "AML_APP_ROOT": APP_ROOT,
        "AZUREML_MODEL_DIR": azureml_model_dir(deployment),
        "SERVICE_NAME": endpoint.name,
        "SERVICE_VERSION": deployment.name,
    }
    if deployment.code_configuration is not None:
        azure["AZUREML_ENTRY_SCRIPT"] = deployment.code_configuration.scoring_script
        azure["AZUREML_SOURCE_DIRECTORY"] = APP_ROOT
    env.update(azure)
    for key, value in deployment.environment_variables.items():
        if key in env and key not in ("WORKER_COUNT",):
            raise spec_error(
                deployment,
                f"environment_variables.{key}",
                "set by the platform from the spec; change the corresponding spec field instead",
            )
        env[key] = value
    env.setdefault("WORKER_COUNT", "1")
    return [{"name": k, "value": v} for k, v in env.items()]


def build_deployment(
    endpoint: OnlineEndpoint,
    deployment: OnlineDeployment,
    instance: InstanceType,
    settings: ClusterSettings,
    image: Any,
) -> dict[str, Any]:
    """The ``apps/v1`` Deployment running one online deployment.

    Args:
        endpoint: The endpoint spec (auth mode, name).
        deployment: The deployment spec.
        instance: The deployment's instance type (catalog entry).
        settings: Stack settings.
        image: Image reference (a digest-pinned string, or a Pulumi output of a built image).

    Pods run under the restricted Pod Security profile (non-root uid >= 10000, read-only root filesystem with an
    emptyDir on /tmp, all capabilities dropped, seccomp RuntimeDefault, no privilege escalation, no service
    account token). Keys are mounted as files from the endpoint's Secret (updated in place on rotation).
    """
    name = deployment_object_name(endpoint.name, deployment.name)
    labels = deployment_labels(endpoint.name, deployment.name)
    resources = with_ephemeral_storage(container_resources(deployment, instance), EPHEMERAL_STORAGE_WORKLOAD)

    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {
            "name": "keys",
            "secret": {
                "secretName": endpoint_names(endpoint.name).secret,
                "defaultMode": 0o440,
                "items": [{"key": k, "path": k} for k in ALL_KEY_FILES],
            },
        },
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
    ]
    collector_volume = data_collector_volume(deployment, settings)
    if collector_volume is not None:
        volumes.append(collector_volume)
        mounts.append({"name": "data-collector", "mountPath": DATA_COLLECTOR_DIR})
    init_containers: list[dict[str, Any]] = []
    uri = remote_model_uri(deployment)
    mdir = azureml_model_dir(deployment)
    if uri is not None:
        volumes.append({"name": "model", "emptyDir": {}})
        mounts.append({"name": "model", "mountPath": mdir, "readOnly": True})
        init_containers.append(fetch_model_init_container(image, uri, mdir, settings))

    container_ports = [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}]
    liveness = http_probe(deployment.liveness_probe, "/", "http", liveness=True)
    readiness = http_probe(deployment.readiness_probe, "/ready", "http", liveness=False)
    env = serving_env(endpoint, deployment, settings)
    args: list[str] | None = ["--host", "0.0.0.0", "--port", str(SERVING_PORT)]

    container: dict[str, Any] = {
        "name": "scorer",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": container_ports,
        "env": env,
        "resources": resources,
        "livenessProbe": liveness,
        "readinessProbe": readiness,
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}},
        "volumeMounts": mounts,
        "securityContext": restricted_container_security(settings),
    }
    if args is not None:
        container["args"] = args
    node_selector, tolerations = pool_scheduling(instance, settings, gpus=_gpu_count(resources))
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(settings),
        "terminationGracePeriodSeconds": termination_grace_period_s(deployment),
        "containers": [container],
        "volumes": volumes,
        # Spread replicas over nodes so one node failure never takes every instance down.
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(endpoint.name, deployment.name)},
            }
        ],
    }
    add_optional_pod_fields(pod_spec, settings, init_containers, node_selector, tolerations)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(endpoint.name, deployment.name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "minReadySeconds": 0,
        "revisionHistoryLimit": 5,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if not isinstance(deployment.scale_settings, TargetUtilizationScaleSettings):
        # An autoscaled Deployment leaves replicas to its HPA/ScaledObject (else every update would reset it).
        spec["replicas"] = deployment.instance_count
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, settings.namespace, labels),
        "spec": spec,
    }


def build_service(endpoint: OnlineEndpoint, deployment: OnlineDeployment, settings: ClusterSettings) -> dict[str, Any]:
    """ClusterIP Service in front of a deployment's pods (port 80 -> the container's ``http`` port)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            deployment_object_name(endpoint.name, deployment.name),
            settings.namespace,
            deployment_labels(endpoint.name, deployment.name),
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(endpoint.name, deployment.name),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
            ],
        },
    }


def build_autoscaler(
    endpoint: OnlineEndpoint, deployment: OnlineDeployment, settings: ClusterSettings
) -> dict[str, Any] | None:
    """HPA (autoscaling/v2, CPU utilisation) for ``target_utilization``; a KEDA ScaledObject (CPU + request rate)
    when the stack enables KEDA; ``None`` for ``scale_settings: default``."""
    scale = deployment.scale_settings
    if not isinstance(scale, TargetUtilizationScaleSettings):
        return None
    name = deployment_object_name(endpoint.name, deployment.name)
    labels = deployment_labels(endpoint.name, deployment.name)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    if settings.keda:
        query = f'sum(rate({REQUEST_METRIC}{{namespace="{settings.namespace}",pod=~"{name}-.*"}}[1m]))'
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": metadata(name, settings.namespace, labels),
            "spec": {
                "scaleTargetRef": target,
                "pollingInterval": scale.polling_interval,
                "minReplicaCount": scale.min_instances,
                "maxReplicaCount": scale.max_instances,
                "triggers": [
                    {
                        "type": "cpu",
                        "metricType": "Utilization",
                        "metadata": {"value": str(scale.target_utilization_percentage)},
                    },
                    {
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": settings.keda_prometheus_url,
                            "query": query,
                            "threshold": str(settings.keda_requests_per_instance),
                        },
                    },
                ],
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, settings.namespace, labels),
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": scale.min_instances,
            "maxReplicas": scale.max_instances,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": scale.target_utilization_percentage},
                    },
                }
            ],
        },
    }


def build_pdb(endpoint: OnlineEndpoint, deployment: OnlineDeployment, settings: ClusterSettings) -> dict[str, Any]:
    """PodDisruptionBudget allowing one pod at a time to be evicted: node drains proceed (never blocked, even
    with one replica) while a multi-replica deployment keeps serving."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(
            deployment_object_name(endpoint.name, deployment.name),
            settings.namespace,
            deployment_labels(endpoint.name, deployment.name),
        ),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(endpoint.name, deployment.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_egress_policy(
    endpoint: OnlineEndpoint, deployment: OnlineDeployment, settings: ClusterSettings
) -> dict[str, Any] | None:
    """For ``egress_public_network_access: disabled``: egress only to cluster DNS and the stack's allow-list."""
    if deployment.egress_public_network_access != "disabled":
        return None
    egress: list[dict[str, Any]] = [dns_egress_rule()]
    if settings.egress_allow_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in settings.egress_allow_cidrs]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            k8s_name(deployment_object_name(endpoint.name, deployment.name), "egress"),
            settings.namespace,
            deployment_labels(endpoint.name, deployment.name),
        ),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(endpoint.name, deployment.name)},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }


def build_deployment_objects(
    endpoint: OnlineEndpoint,
    deployment: OnlineDeployment,
    instance: InstanceType,
    settings: ClusterSettings,
    image: Any,
) -> list[dict[str, Any]]:
    """Every object of one online deployment: Deployment, Service, PDB, then HPA/ScaledObject and egress
    NetworkPolicy when the spec asks for them.

    A custom container or Triton deployment (:mod:`components.builders.byoc`) gets its server beside the auth
    proxy; ``image`` is then the serving image (plus its local model, if any) that the proxy runs from.
    """
    # Imported here: byoc builds on this module's helpers (one-way at import time).

    pod = build_deployment(endpoint, deployment, instance, settings, image)
    server = custom_server(deployment, settings.triton_image)
    if server is not None:
        pod = custom_server_deployment(deployment, pod, server)
    objs = [
        pod,
        build_service(endpoint, deployment, settings),
        build_pdb(endpoint, deployment, settings),
    ]
    for extra in (
        build_autoscaler(endpoint, deployment, settings),
        build_egress_policy(endpoint, deployment, settings),
    ):
        if extra is not None:
            objs.append(extra)
    return objs
