"""Kubernetes launcher: one Indexed Job per batch job, created from the deployment's Job template.

The templates are what ``components.builders.batch_job.build_job_template`` renders (the BatchDeployment component
stores them in a ConfigMap mounted into the job API as ``<deployment>.json``). Submitting fills in the job:
name = job id, the runner's settings (input, output, job id, overrides) in ``ENDPOINTS_BATCH_SETTINGS``,
``parallelism``/``completions`` = ``instance_count``. Kueue admits it (the template is created suspended and
carries ``kueue.x-k8s.io/queue-name``), so a job waits as Queued while its queue is full.

The job's state is read back from the Job: Queued while suspended or not started, Running with active pods,
Completed/Failed from its conditions, Canceled once our annotation is set (cancel suspends the Job, which
deletes its pods; runners get SIGTERM and commit what finished). Requests go through the official
``kubernetes`` client with raw JSON bodies (``_preload_content=False``), so objects stay plain dicts end to end.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from contract.batch import SETTINGS_ENV
from serving.batch.launchers import JobConflictError, JobInfo, JobNotFoundError, JobRequest

JOB_LABEL = "ml-endpoints.io/batch-job"
ENDPOINT_LABEL = "ml-endpoints.io/endpoint"
DEPLOYMENT_LABEL = "ml-endpoints.io/deployment"
INPUT_ANNOTATION = "ml-endpoints.io/input"
OUTPUT_ANNOTATION = "ml-endpoints.io/output"
CANCELED_ANNOTATION = "ml-endpoints.io/canceled"
RUNNER_CONTAINER = "runner"


def load_templates(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Read ``<deployment>.json`` Job templates from a folder (a mounted ConfigMap).

    Raises:
        ValueError: a file is not a batch/v1 Job with a ``runner`` container, naming the file.
    """
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        template = json.loads(path.read_text())
        if template.get("kind") != "Job" or template.get("apiVersion") != "batch/v1":
            raise ValueError(f"{path}: got kind {template.get('kind')!r}; expected a batch/v1 Job template")
        runner_container(template, str(path))
        out[path.stem] = template
    if not out:
        raise ValueError(f"{folder}: no <deployment>.json Job templates")
    return out


def runner_container(job: dict[str, Any], where: str = "template") -> dict[str, Any]:
    """The ``runner`` container of a Job (template)."""
    for c in job["spec"]["template"]["spec"]["containers"]:
        if c["name"] == RUNNER_CONTAINER:
            return c
    raise ValueError(f"{where}: spec.template.spec.containers: no container named {RUNNER_CONTAINER!r}")


def template_settings(template: dict[str, Any]) -> dict[str, Any]:
    """The deployment's runner settings stored in the template's ``ENDPOINTS_BATCH_SETTINGS``."""
    for env in runner_container(template).get("env", []):
        if env["name"] == SETTINGS_ENV:
            return json.loads(env["value"])
    raise ValueError(f"template: container {RUNNER_CONTAINER!r} has no {SETTINGS_ENV} variable")


def build_job(
    template: dict[str, Any], request: JobRequest, namespace: str, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Instantiate a Job template for one request (pure: no API call).

    ``owner`` (an ownerReference) makes the Job a dependent of that object: the garbage collector deletes the Job
    and its pods when the owner goes.
    """
    job = copy.deepcopy(template)
    meta = job["metadata"]
    meta["name"] = request.id
    meta["namespace"] = namespace
    meta.pop("resourceVersion", None)
    if owner is not None:
        meta["ownerReferences"] = [owner]
    meta.setdefault("labels", {})[JOB_LABEL] = request.id
    meta["annotations"] = {
        **meta.get("annotations", {}),
        INPUT_ANNOTATION: request.input,
        OUTPUT_ANNOTATION: request.output,
    }
    instances = int(request.settings.get("instance_count", 1))
    spec = job["spec"]
    spec["parallelism"] = instances
    spec["completions"] = instances
    pod_meta = spec["template"].setdefault("metadata", {})
    pod_meta.setdefault("labels", {})[JOB_LABEL] = request.id
    container = runner_container(job)
    env = [e for e in container.get("env", []) if e["name"] != SETTINGS_ENV]
    env.append({"name": SETTINGS_ENV, "value": json.dumps(request.settings, sort_keys=True)})
    container["env"] = env
    return job


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _runner_progress(settings: dict[str, Any]) -> dict[str, Any] | None:
    """Row-level progress from the runner's journal when the job API mounts the jobs' output volume."""
    from contract.batch_settings import RunnerSettings
    from serving.batch.status import job_status

    try:
        parsed = RunnerSettings.model_validate(settings)
    except ValueError:
        return None
    if not parsed.state_dir.is_dir():
        return None
    return job_status(parsed)


def job_info(job: dict[str, Any]) -> JobInfo:
    """Read a Job back as a :class:`JobInfo` (with the runner's counts when its output folder is readable)."""
    meta = job["metadata"]
    spec = job.get("spec", {})
    status = job.get("status") or {}
    labels = meta.get("labels", {})
    annotations = meta.get("annotations", {})
    conditions = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
    settings: dict[str, Any] = {}
    try:
        for e in runner_container(job).get("env", []):
            if e["name"] == SETTINGS_ENV:
                settings = json.loads(e["value"])
    except (KeyError, ValueError):
        pass
    error = None
    finished = None
    if CANCELED_ANNOTATION in annotations:
        state = "Canceled"
        finished = float(annotations[CANCELED_ANNOTATION])
    elif "Complete" in conditions:
        state = "Completed"
        finished = _timestamp(status.get("completionTime")) or _timestamp(
            conditions["Complete"].get("lastTransitionTime")
        )
    elif "Failed" in conditions:
        state = "Failed"
        c = conditions["Failed"]
        error = f"{c.get('reason', 'Failed')}: {c.get('message', '')}".rstrip(": ")
        finished = _timestamp(c.get("lastTransitionTime"))
    elif spec.get("suspend") or (not status.get("active") and not status.get("startTime")):
        state = "Queued"
    else:
        state = "Running"
    total = int(spec.get("completions") or 1)
    succeeded = int(status.get("succeeded") or 0)
    progress: dict[str, Any] = {"instances_done": succeeded, "instances": total, "percent": 100.0 * succeeded / total}
    counts: dict[str, Any] = {
        "active": int(status.get("active") or 0),
        "ready": int(status.get("ready") or 0),
        "succeeded": succeeded,
        "failed": int(status.get("failed") or 0),
        "completed_indexes": status.get("completedIndexes", ""),
    }
    runner = _runner_progress(settings) if settings else None
    if runner is not None:
        progress = {**runner["progress"], **progress}
        counts.update({k: runner[k] for k in ("files", "mini_batches", "items", "rows", "failures")})
        if state == "Failed" and runner.get("error"):
            error = f"{error}; runner: {runner['error']}"
    return JobInfo(
        id=meta["name"],
        endpoint=labels.get(ENDPOINT_LABEL, ""),
        deployment=labels.get(DEPLOYMENT_LABEL, ""),
        status=state,  # type: ignore[arg-type]
        input=annotations.get(INPUT_ANNOTATION, settings.get("input", "")),
        output=annotations.get(OUTPUT_ANNOTATION, settings.get("output_dir", "")),
        output_file_name=settings.get("output_file_name", "predictions.csv"),
        created=_timestamp(meta.get("creationTimestamp")) or 0.0,
        finished=finished,
        error=error,
        progress=progress,
        counts=counts,
        settings=settings,
    )


class KubernetesLauncher:
    """See the module docstring."""

    def __init__(
        self,
        namespace: str,
        templates: dict[str, dict[str, Any]],
        api_client: Any = None,
        owner_deployment: str | None = None,
    ) -> None:
        """Talk to the cluster.

        Args:
            namespace: Namespace of the Jobs (the job API's own; its Role allows Jobs there only).
            templates: Deployment name -> Job template.
            api_client: A ``kubernetes.client.ApiClient``; default: in-cluster config, else ``~/.kube/config``.
            owner_deployment: The job API's own Deployment (in ``namespace``), made the owner of every Job it
                creates: removing the endpoint (``pulumi destroy`` or dropping it from the stack) then removes its
                jobs and their pods, which otherwise keep the batch volume in use and its deletion waiting.
                Default none (Jobs have no owner).
        """
        from kubernetes import client, config

        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self.namespace = namespace
        self.templates = templates
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.owner_deployment = owner_deployment
        self._api_exception = client.ApiException

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return json.loads(response.data)

    def _call(self, fn: Any, *args: Any, missing: str | None = None, **kwargs: Any) -> dict[str, Any]:
        try:
            return self._json(fn(*args, _preload_content=False, **kwargs))
        except self._api_exception as e:
            if e.status == 404 and missing:
                raise JobNotFoundError(missing) from e
            if e.status == 409:
                raise JobConflictError(f"batch job already exists: {_reason(e)}") from e
            raise

    def submit(self, request: JobRequest) -> JobInfo:
        """Create the Job (Kueue admits it when its queue has room)."""
        template = self.templates.get(request.deployment)
        if template is None:
            raise JobNotFoundError(f"deployment {request.deployment!r} has no Job template")
        job = build_job(template, request, self.namespace, self._owner())
        created = self._call(self.batch.create_namespaced_job, self.namespace, job)
        return job_info(created)

    def _owner(self) -> dict[str, Any] | None:
        """The ownerReference of the job API's Deployment (read on each submit: its uid changes if it is
        re-created)."""
        if self.owner_deployment is None:
            return None
        deployment = self._call(self.apps.read_namespaced_deployment, self.owner_deployment, self.namespace)
        meta = deployment["metadata"]
        return {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"]}

    def get(self, job_id: str) -> JobInfo:
        """Read the Job back; a failed Job's error carries the runner's own reason from its pods' termination
        messages (the runner writes it to ``terminationMessagePath``), not only the Job condition."""
        info = job_info(
            self._call(self.batch.read_namespaced_job, job_id, self.namespace, missing=f"no batch job {job_id!r}")
        )
        if info.status == "Failed":
            reasons = self._runner_reasons(job_id)
            if reasons and not (info.error and reasons[0] in info.error):
                error = f"{info.error}; runner: {reasons[0]}" if info.error else reasons[0]
                info = info.model_copy(update={"error": error})
        return info

    def _runner_reasons(self, job_id: str) -> list[str]:
        """Distinct termination messages of the Job's runner containers that ended with an error, by pod name."""
        pods = self._call(self.core.list_namespaced_pod, self.namespace, label_selector=f"{JOB_LABEL}={job_id}")
        reasons: list[str] = []
        for pod in sorted(pods.get("items", []), key=lambda p: p["metadata"]["name"]):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated") or {}
                message = str(terminated.get("message") or "").strip()
                failed = status.get("name") == RUNNER_CONTAINER and terminated.get("exitCode")
                if failed and message and message not in reasons:
                    reasons.append(message)
        return reasons

    def list(self) -> list[JobInfo]:
        """Jobs carrying the batch-job label, newest first."""
        data = self._call(self.batch.list_namespaced_job, self.namespace, label_selector=JOB_LABEL)
        infos = [job_info(j) for j in data.get("items", [])]
        return sorted(infos, key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str) -> JobInfo:
        """Annotate the Job canceled and suspend it (Kubernetes then terminates its pods)."""
        info = self.get(job_id)
        if info.status in ("Completed", "Failed", "Canceled"):
            raise JobConflictError(
                f"batch job {job_id!r} is {info.status}; only Queued or Running jobs can be canceled"
            )
        patch = {"metadata": {"annotations": {CANCELED_ANNOTATION: str(time.time())}}, "spec": {"suspend": True}}
        patched = self._call(
            self.batch.patch_namespaced_job,
            job_id,
            self.namespace,
            patch,
            missing=f"no batch job {job_id!r}",
            _content_type="application/merge-patch+json",
        )
        return job_info(patched)

    def logs(self, job_id: str, tail: int) -> dict[str, str]:
        """The last ``tail`` lines of each of the Job's pods (by pod name; a pod not started yet reads empty).

        Raises:
            JobNotFoundError: unknown id.
        """
        self.get(job_id)
        pods = self._call(self.core.list_namespaced_pod, self.namespace, label_selector=f"{JOB_LABEL}={job_id}")
        out = {}
        for pod in sorted(pods.get("items", []), key=lambda p: p["metadata"]["name"]):
            name = pod["metadata"]["name"]
            try:
                response: Any = self.core.read_namespaced_pod_log(
                    name, self.namespace, tail_lines=tail, _preload_content=False
                )
                out[name] = response.data.decode("utf-8", errors="replace")
            except self._api_exception as e:
                if e.status not in (400, 404):  # 400: the container is still creating
                    raise
                out[name] = ""
        return out


def _reason(e: Any) -> str:
    try:
        return str(json.loads(e.body).get("message", e.reason))
    except (TypeError, ValueError):
        return str(e.reason)
