"""Pure builders for batch endpoints: the Indexed Job template of a deployment and the job API's objects.

Nothing here imports ``pulumi`` or touches the network. ``components.batch_endpoint`` /
``components.batch_deployment``, the offline plan and the tests call these functions; the job API's Kubernetes
launcher (``serving.batch.launchers.kubernetes.build_job``) instantiates the template per job.

Scheduling: every Job carries the Kueue label ``kueue.x-k8s.io/queue-name`` and is created suspended, so Kueue
queues it while the queue's quota is used and admits it when there is room; nothing runs while no job does.
Low-priority deployments (tag ``priority: low``, Azure's ``low_priority`` tier) get a PriorityClass that never
preempts and tolerate the spot taints of AKS, GKE and EKS spot node pools.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from components.builders.common import (
    ENDPOINT_LABEL,
    EPHEMERAL_STORAGE_SMALL,
    EPHEMERAL_STORAGE_WORKLOAD,
    KIND_LABEL,
    MANAGED_BY,
    SIGNING_KEY_FILE,
    ClusterSettings,
    add_optional_pod_fields,
    build_keys_secret,  # noqa: F401  (re-exported: the batch endpoint's Secret)
    deployment_labels,
    dns_egress_rule,
    endpoint_labels,
    k8s_name,
    keys_secret_name,
    metadata,
    restricted_container_security,
    restricted_pod_security,
    selector_labels,
    with_ephemeral_storage,
)
from components.builders.compute import (
    GPU_RESOURCE,
    build_cluster_queue,
    build_local_queue,
    build_priority_class,
    pool_scheduling,
)
from contract.batch import EXIT_JOB_FAILED, SETTINGS_ENV, TERMINATION_LOG_ENV
from contract.serving import FrontendSettings
from endpoints.batchmap import deployment_settings
from endpoints.catalog import InstanceCatalog, InstanceType
from endpoints.errors import SpecError
from endpoints.images import azureml_model_dir
from endpoints.specs import BatchDeployment, BatchEndpoint, ModelAsset

APP_ROOT = "/var/azureml-app"
# Instance type of a batch deployment whose spec names none (Azure batch deployments name a compute cluster, whose
# VM size is set on the cluster, not in the deployment): the stack's ``batchInstanceType`` overrides it.
DEFAULT_BATCH_INSTANCE_TYPE = "Standard_DS3_v2"
TEMPLATES_HASH_ANNOTATION = "ml-endpoints.io/templates-hash"
# Where a runner container writes why it failed (Kubernetes shows it in the pod status; the job API reads it).
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
BATCH_MOUNT = "/mnt/batch"  # the shared volume: outputs (and optionally inputs) of every job
OUTPUT_ROOT = f"{BATCH_MOUNT}/outputs"
TEMPLATES_DIR = "/etc/endpoints/batch-templates"
KEYS_DIR = "/etc/endpoints/keys"
API_PORT = 8080
RUNNER_CONTAINER = "runner"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LOW_PRIORITY_CLASS = "ml-endpoints-batch-low"
NORMAL_PRIORITY_CLASS = "ml-endpoints-batch"
SPOT_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"},
    {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
    {"key": "eks.amazonaws.com/capacityType", "operator": "Equal", "value": "SPOT", "effect": "NoSchedule"},
)
REMOTE_MODEL_SCHEMES = ("s3://", "az://", "abfs://", "abfss://", "gs://", "gcs://", "https://", "http://", "models:/")

Priority = Literal["normal", "low"]


@dataclass(frozen=True)
class BatchOptions:
    """Stack-level choices for batch jobs.

    Attributes:
        queue_name: Kueue LocalQueue the Jobs are submitted to (default none: the endpoint's own LocalQueue
            ``<endpoint>-batch``, which the BatchEndpoint creates).
        cluster_queue: Kueue ClusterQueue the endpoint's LocalQueue points at (default ``batch``; quotas per pool
            come from the compute pools).
        volume_claim: PersistentVolumeClaim (ReadWriteMany) mounted at ``/mnt/batch`` in runners and the job API;
            outputs go to ``/mnt/batch/outputs/<job>`` (default ``batch-data``).
        volume_size: Size the BatchEndpoint requests when it creates the claim (default ``100Gi``).
        storage_class: Storage class of the claim (default none: the cluster's default; it must offer
            ReadWriteMany, e.g. Azure Files, EFS, Filestore, NFS).
        active_deadline_seconds: Longest a job may run (default 24 h).
        ttl_seconds_after_finished: Finished Jobs are garbage-collected after this (default 7 days).
        backoff_limit_per_instance: Pod retries per instance for crashes (default 3; preemption is not counted).
        drain_timeout_s: Seconds a runner lets running mini-batches finish on SIGTERM (default 20).
    """

    queue_name: str | None = None
    cluster_queue: str = "batch"
    volume_claim: str = "batch-data"
    volume_size: str = "100Gi"
    storage_class: str | None = None
    active_deadline_seconds: int = 24 * 3600
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    backoff_limit_per_instance: int = 3
    drain_timeout_s: int = 20


def priority_of(deployment: BatchDeployment) -> Priority:
    """``low`` when the deployment is tagged ``priority: low`` (or ``low_priority``), else ``normal``.

    Raises:
        SpecError: the tag holds another value, naming the deployment and the value.
    """
    value = deployment.tags.get("priority", "normal").lower()
    if value in ("low", "low_priority", "lowpriority", "spot"):
        return "low"
    if value in ("normal", "dedicated", "regular"):
        return "normal"
    raise SpecError(f"deployment {deployment.name}: tags.priority: got {value!r}; use low or normal")


def queue_name(endpoint_name: str, options: BatchOptions) -> str:
    """The LocalQueue of an endpoint's jobs: ``options.queue_name``, else the endpoint's own ``<endpoint>-batch``."""
    return options.queue_name or k8s_name(endpoint_name, "batch")


def build_endpoint_local_queue(
    endpoint: BatchEndpoint, settings: ClusterSettings, options: BatchOptions
) -> dict[str, Any]:
    """The endpoint's Kueue LocalQueue (its jobs wait there while ``options.cluster_queue`` has no room)."""
    queue = build_local_queue(queue_name(endpoint.name, options), settings.namespace, options.cluster_queue)
    queue["metadata"]["labels"] = {**queue["metadata"]["labels"], **endpoint_labels(endpoint.name)}
    return queue


def job_template_name(endpoint_name: str, deployment_name: str) -> str:
    """Name of a deployment's template (the launcher renames each Job to its job id)."""
    return k8s_name(endpoint_name, deployment_name, "batch")


def job_api_name(endpoint_name: str) -> str:
    """Name of the job API's Deployment, Service, ServiceAccount, Role and RoleBinding."""
    return k8s_name(endpoint_name, "jobs")


def pod_settings(deployment: BatchDeployment, options: BatchOptions) -> dict[str, Any]:
    """The deployment's runner settings as seen inside the pod (paths in the image)."""
    if isinstance(deployment.model, str):
        raise SpecError(
            f"deployment {deployment.name}: model: {deployment.model!r} is an unresolved reference; resolve it with"
            " the project's registry before building"
        )
    data = deployment_settings(deployment)
    code = deployment.code_configuration
    data["entry_script"] = f"{APP_ROOT}/{code.scoring_script}" if code is not None else None
    data["model_dir"] = azureml_model_dir(deployment) if deployment.model is not None else None
    data["drain_timeout"] = float(options.drain_timeout_s)
    return data


def build_job_template(
    endpoint: BatchEndpoint,
    deployment: BatchDeployment,
    instance: InstanceType,
    settings: ClusterSettings,
    image: Any,
    options: BatchOptions | None = None,
) -> dict[str, Any]:
    """The ``batch/v1`` Indexed Job template of a batch deployment.

    Args:
        endpoint: The batch endpoint.
        deployment: The batch deployment.
        instance: Its instance type (requests/limits, GPU pool scheduling).
        settings: Stack settings (namespace, pool label, uid).
        image: The runner image (scoring code + environment on the serving base image).
        options: Queue, volume, deadlines (default :class:`BatchOptions`).

    The Job: ``completionMode: Indexed`` with ``parallelism = completions = instance_count`` (each pod reads its
    share from ``JOB_COMPLETION_INDEX``), created suspended for Kueue, ``backoffLimit`` = instances x retries,
    a ``podFailurePolicy`` that fails the Job at once when a runner exits 3 (error threshold, ``init()``
    failure: a retry cannot help) and does not count preempted/evicted pods (``DisruptionTarget``),
    ``activeDeadlineSeconds`` and ``ttlSecondsAfterFinished``. Pods run under the restricted Pod Security profile.
    """
    opts = options or BatchOptions()
    labels = {
        **deployment_labels(endpoint.name, deployment.name),
        "ml-endpoints.io/kind": "batch-job",
        KUEUE_QUEUE_LABEL: queue_name(endpoint.name, opts),
    }
    pod_labels = {**deployment_labels(endpoint.name, deployment.name), "ml-endpoints.io/kind": "batch-job"}
    resources = with_ephemeral_storage(instance.kubernetes_resources(), EPHEMERAL_STORAGE_WORKLOAD)
    node_selector, tolerations = pool_scheduling(instance, settings)
    # Always pinned to its pool, CPU pools included: Kueue assigns a ResourceFlavor whose nodeLabels match the
    # pod's node selector, so the Job is charged to (and admitted on) its own pool's quota, never another's.
    node_selector = {**node_selector, settings.pool_label: instance.pool}
    priority = priority_of(deployment)
    if priority == "low":
        tolerations = [*tolerations, *(dict(t) for t in SPOT_TOLERATIONS)]
    instances = deployment.resources.instance_count
    runner_settings = pod_settings(deployment, opts)
    env = [
        {"name": SETTINGS_ENV, "value": json.dumps(runner_settings, sort_keys=True)},
        # The runner writes why it failed there; the job API reads it back from the pod's status.
        {"name": TERMINATION_LOG_ENV, "value": TERMINATION_MESSAGE_PATH},
        {"name": "HOME", "value": "/tmp"},
        {"name": "AML_APP_ROOT", "value": APP_ROOT},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "batch", "persistentVolumeClaim": {"claimName": opts.volume_claim}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "batch", "mountPath": BATCH_MOUNT},
    ]
    init_containers = []
    model = deployment.model
    if isinstance(model, ModelAsset) and model.path.startswith(REMOTE_MODEL_SCHEMES):
        mdir = azureml_model_dir(deployment)
        volumes.append({"name": "model", "emptyDir": {}})
        mounts.append({"name": "model", "mountPath": mdir, "readOnly": True})
        init_containers.append(
            {
                "name": "fetch-model",
                "image": image,
                "command": ["python", "-m", "serving.fetch_model", "--uri", model.path, "--dest", mdir],
                "env": [{"name": "HOME", "value": "/tmp"}],
                "volumeMounts": [{"name": "model", "mountPath": mdir}, {"name": "tmp", "mountPath": "/tmp"}],
                "resources": with_ephemeral_storage(
                    {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                    EPHEMERAL_STORAGE_WORKLOAD,
                ),
                "securityContext": restricted_container_security(settings),
            }
        )
    container = {
        "name": RUNNER_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "serving.batch.runner"],
        "env": env,
        "resources": resources,
        "volumeMounts": mounts,
        "securityContext": restricted_container_security(settings),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # podFailurePolicy needs it; the Job retries pods
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(settings),
        "priorityClassName": LOW_PRIORITY_CLASS if priority == "low" else NORMAL_PRIORITY_CLASS,
        # Longer than the runner's drain, so SIGTERM always leaves time to commit finished mini-batches.
        "terminationGracePeriodSeconds": opts.drain_timeout_s + 15,
        "containers": [container],
        "volumes": volumes,
    }
    add_optional_pod_fields(pod_spec, settings, init_containers, node_selector, tolerations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(job_template_name(endpoint.name, deployment.name), settings.namespace, labels),
        "spec": {
            "completionMode": "Indexed",
            "completions": instances,
            "parallelism": instances,
            "suspend": True,  # Kueue un-suspends it on admission
            "backoffLimit": instances * opts.backoff_limit_per_instance,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": RUNNER_CONTAINER,
                            "operator": "In",
                            "values": [EXIT_JOB_FAILED],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "activeDeadlineSeconds": opts.active_deadline_seconds,
            "ttlSecondsAfterFinished": opts.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def template_config_map_name(endpoint_name: str, deployment_name: str) -> str:
    """Name of the ConfigMap holding one deployment's Job template."""
    return k8s_name(endpoint_name, deployment_name, "batch-template")


def build_template_config_map(
    endpoint: BatchEndpoint, deployment: BatchDeployment, template: dict[str, Any], settings: ClusterSettings
) -> dict[str, Any]:
    """ConfigMap with ``<deployment>.json``: the Job template, projected into the job API's templates folder."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            template_config_map_name(endpoint.name, deployment.name),
            settings.namespace,
            {**deployment_labels(endpoint.name, deployment.name), "ml-endpoints.io/kind": "batch-template"},
        ),
        "data": {f"{deployment.name}.json": json.dumps(template, sort_keys=True)},
    }


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


def build_volume_claim(endpoint: BatchEndpoint, settings: ClusterSettings, options: BatchOptions) -> dict[str, Any]:
    """The ReadWriteMany volume of one endpoint's runners and job API (outputs, journals, summaries)."""
    claim = build_batch_volume_claim(settings.namespace, options)
    claim["metadata"]["labels"] = endpoint_labels(endpoint.name)
    return claim


def build_batch_volume_claim(namespace: str, options: BatchOptions) -> dict[str, Any]:
    """The stack's shared ReadWriteMany batch volume ``options.volume_claim`` (every endpoint's jobs write under
    ``/mnt/batch/outputs/<job id>``; job ids are unique)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": options.volume_size}},
    }
    if options.storage_class:
        spec["storageClassName"] = options.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(options.volume_claim, namespace, {**MANAGED_BY, KIND_LABEL: "batch-data"}),
        "spec": spec,
    }


def build_batch_priority_classes() -> list[dict[str, Any]]:
    """The two PriorityClasses batch Jobs use (cluster-scoped: create them once per cluster, e.g. with the pools).

    Low priority never preempts anything; normal batch work sits below online serving (the default 0 is above).
    """
    return [
        build_priority_class(NORMAL_PRIORITY_CLASS, -10, "Batch endpoint jobs (below online serving)."),
        build_priority_class(
            LOW_PRIORITY_CLASS, -100, "Low-priority batch jobs: never preempt, run on spot capacity.", preempt=False
        ),
    ]


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


def build_runner_egress_policy(endpoint: BatchEndpoint, settings: ClusterSettings) -> dict[str, Any]:
    """NetworkPolicy: the runner pods of every job of the endpoint may reach only the cluster DNS and the storage the
    stack allows (``egressAllowCidrs``: remote inputs and models, e.g. an object store's addresses); outputs go to
    the mounted volume. Everything else (the API server, other pods, the internet) is denied."""
    egress = [dns_egress_rule()]
    if settings.egress_allow_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in settings.egress_allow_cidrs]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            k8s_name(endpoint.name, "runners-egress"), settings.namespace, endpoint_labels(endpoint.name)
        ),
        "spec": {
            "podSelector": {"matchLabels": {ENDPOINT_LABEL: endpoint.name, KIND_LABEL: "batch-job"}},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }


def templates_hash(config_maps: list[dict[str, Any]]) -> str:
    """sha256 (first 16 hex digits) over the Job template ConfigMaps' data, in name order."""
    digest = hashlib.sha256()
    for cm in sorted(config_maps, key=lambda c: str(c["metadata"]["name"])):
        digest.update(json.dumps([cm["metadata"]["name"], cm.get("data")], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def batch_instance_type(
    deployment: BatchDeployment, catalog: InstanceCatalog, default: str = DEFAULT_BATCH_INSTANCE_TYPE
) -> InstanceType:
    """The instance type each instance of a batch deployment runs as.

    ``instance_type`` when the spec names one; else ``default`` (the stack's ``batchInstanceType``, default
    ``Standard_DS3_v2``): Azure batch deployments name a compute *cluster* (``compute: azureml:cpu-cluster``)
    whose VM size lives on the cluster, not in the spec. When ``compute`` names a pool of the catalog, the
    default must run in that pool.

    Raises:
        SpecError: the type is unknown, or the default type belongs to another pool than ``compute`` names.
    """
    where = f"deployment {deployment.name}"
    if deployment.source_path:
        where = f"{deployment.source_path}"
    name = deployment.instance_type or default
    try:
        instance = catalog.get(name)
    except KeyError as e:
        field = "instance_type" if deployment.instance_type else "batchInstanceType (the stack's default)"
        raise SpecError(f"{where}: {field}: {e.args[0]}") from None
    pool = deployment.compute_pool
    pools = {it.pool for it in catalog.values()}
    if deployment.instance_type is None and pool is not None and pool in pools and instance.pool != pool:
        raise SpecError(
            f"{where}: compute: got {deployment.compute!r}, but the default batch instance type {name!r} runs in"
            f" pool {instance.pool!r}; set instance_type to a type of pool {pool!r} (or the stack's"
            " overrides.<endpoint>.deployments.<name>.instanceType)"
        )
    return instance


def batch_cluster_queue_name(namespace: str) -> str:
    """The stack's Kueue ClusterQueue (cluster-scoped, so named after the stack's namespace)."""
    return k8s_name(namespace, "batch")


def batch_flavor_name(namespace: str, pool: str) -> str:
    """The stack's Kueue ResourceFlavor of a pool (cluster-scoped: named after the namespace and the pool)."""
    return k8s_name(namespace, pool)


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_FACTOR = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(text: str) -> float:
    """A Kubernetes resource quantity (``500m``, ``16``, ``64Gi``, ``1.5G``) as a number of base units.

    Raises:
        ValueError: not a quantity this project writes (no exponent forms), naming the value.
    """
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"got {text!r}; expected a Kubernetes quantity such as 16, 500m, 64Gi")
    return float(m.group(1)) * _FACTOR[m.group(2)]


def _quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def default_pool_quota(jobs: list[tuple[InstanceType, int]]) -> dict[str, str]:
    """Nominal quota of a pool when the stack sets none: room for the largest job of the pool at full size.

    Args:
        jobs: (instance type, instance count) of each batch deployment running in the pool.

    One job of each deployment can always be admitted; further jobs queue until it finishes.
    """

    def request(instance: InstanceType, resource: str, unit: str) -> int:
        return int(instance.kubernetes_resources()["requests"][resource].removesuffix(unit))

    cpu = max(request(i, "cpu", "m") * n for i, n in jobs)
    memory = max(request(i, "memory", "Mi") * n for i, n in jobs)
    gpus = max(i.gpu_count * n for i, n in jobs)
    quota = {"cpu": f"{cpu}m", "memory": f"{memory}Mi"}
    if gpus:
        quota[GPU_RESOURCE] = _quantity(gpus)
    return quota


def build_batch_cluster_queue(namespace: str, quotas: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The stack's ClusterQueue: one ResourceFlavor per pool (:func:`batch_flavor_name`) with its quota.

    Args:
        namespace: The stack's namespace (the only one admitted; it names the queue).
        quotas: pool -> ``{"cpu": ..., "memory": ..., "nvidia.com/gpu": ...}``.
    """
    flavors = {batch_flavor_name(namespace, pool): quota for pool, quota in quotas.items()}
    return build_cluster_queue(batch_cluster_queue_name(namespace), flavors, [namespace])


def build_batch_platform_objects(
    namespace: str, quotas: dict[str, dict[str, str]], priority_classes: bool = True
) -> list[dict[str, Any]]:
    """Stack-wide batch objects: the ClusterQueue and (unless another stack of the cluster owns them) the two
    PriorityClasses. The pools' ResourceFlavors come from ``ComputePool``."""
    objs = [build_batch_cluster_queue(namespace, quotas)]
    if priority_classes:
        objs += build_batch_priority_classes()
    return objs
