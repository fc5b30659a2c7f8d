"""The stack's batch choices (:class:`BatchOptions`, the default instance type) and the volume they name.

Every batch builder takes a :class:`BatchOptions`: the Kueue queues a job waits in (``batch_queues``), the deadlines
and retries of its Job (``batch_job``) and the ReadWriteMany volume that runners and the job API share
(``batch_job_api``), whose claim is built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.builders.common import KIND_LABEL, MANAGED_BY, ClusterSettings, endpoint_labels, metadata
from endpoints.catalog import InstanceCatalog, InstanceType
from endpoints.errors import SpecError
from endpoints.specs import BatchDeployment, BatchEndpoint

# Instance type of a batch deployment whose spec names none (Azure batch deployments name a compute cluster, whose
# VM size is set on the cluster, not in the deployment): the stack's ``batchInstanceType`` overrides it.
DEFAULT_BATCH_INSTANCE_TYPE = "Standard_DS3_v2"
BATCH_MOUNT = "/mnt/batch"  # the shared volume: outputs (and optionally inputs) of every job
OUTPUT_ROOT = f"{BATCH_MOUNT}/outputs"


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


def build_volume_claim(endpoint: BatchEndpoint, settings: ClusterSettings, options: BatchOptions) -> dict[str, Any]:
    """The ReadWriteMany volume of one endpoint's runners and job API (outputs, journals, summaries)."""
    claim = build_batch_volume_claim(settings.namespace, options)
    claim["metadata"]["labels"] = endpoint_labels(endpoint.name)
    return claim
