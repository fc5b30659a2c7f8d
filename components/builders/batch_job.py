"""The Indexed Job template of a batch deployment, the ConfigMap that carries it, and the runners' egress policy.

The job API's Kubernetes launcher (``serving.batch.launchers.kubernetes.build_job``) instantiates the template
per job; ``components.batch_deployment``, the offline plan and the tests call these functions. Pure: nothing here
imports ``pulumi`` or touches the network.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from components.builders.batch_options import BATCH_MOUNT, BatchOptions
from components.builders.batch_queues import (
    KUEUE_QUEUE_LABEL,
    LOW_PRIORITY_CLASS,
    NORMAL_PRIORITY_CLASS,
    priority_of,
    queue_name,
)
from components.builders.common import (
    ENDPOINT_LABEL,
    EPHEMERAL_STORAGE_WORKLOAD,
    KIND_LABEL,
    REMOTE_MODEL_SCHEMES,
    ClusterSettings,
    add_optional_pod_fields,
    deployment_labels,
    dns_egress_rule,
    endpoint_labels,
    k8s_name,
    metadata,
    with_ephemeral_storage,
)
from components.builders.compute import pool_scheduling
from components.builders.model_fetch import fetch_model_init_container
from components.builders.pod_security import restricted_container_security, restricted_pod_security
from contract.batch import EXIT_JOB_FAILED, SETTINGS_ENV, TERMINATION_LOG_ENV
from endpoints.batchmap import deployment_settings
from endpoints.catalog import InstanceType
from endpoints.errors import SpecError
from endpoints.images import APP_ROOT, azureml_model_dir
from endpoints.specs import BatchDeployment, BatchEndpoint, ModelAsset

# Where a runner container writes why it failed (Kubernetes shows it in the pod status; the job API reads it).
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
RUNNER_CONTAINER = "runner"
SPOT_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"},
    {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
    {"key": "eks.amazonaws.com/capacityType", "operator": "Equal", "value": "SPOT", "effect": "NoSchedule"},
)


def job_template_name(endpoint_name: str, deployment_name: str) -> str:
    """Name of a deployment's template (the launcher renames each Job to its job id)."""
    return k8s_name(endpoint_name, deployment_name, "batch")


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
        init_containers.append(fetch_model_init_container(image, model.path, mdir, settings))
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


def templates_hash(config_maps: list[dict[str, Any]]) -> str:
    """sha256 (first 16 hex digits) over the Job template ConfigMaps' data, in name order."""
    digest = hashlib.sha256()
    for cm in sorted(config_maps, key=lambda c: str(c["metadata"]["name"])):
        digest.update(json.dumps([cm["metadata"]["name"], cm.get("data")], sort_keys=True).encode())
    return digest.hexdigest()[:16]


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
