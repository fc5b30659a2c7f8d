"""Job template and job API builders, and the Kubernetes launcher against a loopback stand-in API server."""

from __future__ import annotations

import json
import re

import pytest
from fake_apiserver import FakeApiServer
from kubernetes import client

from components.builders.batch_job import SPOT_TOLERATIONS, build_job_template, build_template_config_map
from components.builders.batch_job_api import build_job_api_objects, build_job_api_route, jobs_uri
from components.builders.batch_options import BatchOptions
from components.builders.batch_queues import (
    LOW_PRIORITY_CLASS,
    build_batch_priority_classes,
    build_endpoint_local_queue,
    priority_of,
)
from components.builders.common import ClusterSettings
from components.builders.keys import build_keys_secret
from components.k8s_schema import validate_object, validate_objects
from endpoints.catalog import InstanceCatalog
from endpoints.errors import SpecError
from endpoints.specs import BatchDeployment, BatchEndpoint
from serving.batch.api import BadRequestError, JobApi, JobSubmission
from serving.batch.launchers import JobConflictError, JobNotFoundError
from serving.batch.launchers.kubernetes import KubernetesLauncher, build_job, job_info, template_settings

SETTINGS = ClusterSettings(namespace="ml")
IMAGE = "registry.example.com/cars-batch@sha256:" + "a" * 64


def endpoint(**kw):
    return BatchEndpoint.model_validate({"name": "cars-batch", "auth_mode": "key", **kw})


def deployment(**kw):
    data = {
        "name": "alice",
        "endpoint_name": "cars-batch",
        "model": {"name": "cars", "version": "3", "path": "./model"},
        "code_configuration": {"code": "./code", "scoring_script": "batch_score.py"},
        "resources": {"instance_count": 3},
        "settings": {
            "mini_batch_size": 20,
            "max_concurrency_per_instance": 4,
            "retry_settings": {"max_retries": 2, "timeout": 60},
            "error_threshold": 5,
            "output_file_name": "scores.csv",
            "environment_variables": {"LABELS": "a,b"},
        },
    }
    data.update(kw)
    return BatchDeployment.model_validate(data)


def cpu():
    return InstanceCatalog.default().get("Standard_DS3_v2")


def gpu():
    return InstanceCatalog.default().get("Standard_NC6s_v3")


def test_job_template_is_an_indexed_kueue_job_with_failure_policy():
    job = build_job_template(endpoint(), deployment(), cpu(), SETTINGS, IMAGE)
    assert validate_object(job) == []
    spec = job["spec"]
    assert job["metadata"]["name"] == "cars-batch-alice-batch"
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "cars-batch-batch"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["suspend"]) == (
        "Indexed",
        3,
        3,
        True,
    )
    assert spec["backoffLimit"] == 9
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "FailJob", "onExitCodes": {"containerName": "runner", "operator": "In", "values": [3]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    assert spec["activeDeadlineSeconds"] == 86400
    assert spec["ttlSecondsAfterFinished"] == 604800
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["priorityClassName"] == "ml-endpoints-batch"
    assert "tolerations" not in pod
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "serving.batch.runner"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ENDPOINTS_BATCH_TERMINATION_LOG"] == container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    expected = cpu().kubernetes_resources()
    expected["requests"]["ephemeral-storage"], expected["limits"]["ephemeral-storage"] = "1Gi", "20Gi"
    assert container["resources"] == expected
    assert template_settings(job) == {
        "drain_timeout": 20.0,
        "entry_script": "/var/azureml-app/batch_score.py",
        "environment_variables": {"LABELS": "a,b"},
        "error_threshold": 5,
        "instance_count": 3,
        "logging_level": "info",
        "max_concurrency_per_instance": 4,
        "max_retries": 2,
        "mini_batch_size": 20,
        "model_dir": "/var/azureml-app/azureml-models/cars/3",
        "output_action": "append_row",
        "output_file_name": "scores.csv",
        "timeout": 60.0,
    }


def test_low_priority_gpu_job_tolerates_spot_and_gpu_taints():
    dep = deployment(tags={"priority": "low"})
    job = build_job_template(endpoint(), dep, gpu(), SETTINGS, IMAGE, BatchOptions(queue_name="gpu-batch"))
    assert validate_object(job) == []
    pod = job["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == LOW_PRIORITY_CLASS
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        *SPOT_TOLERATIONS,
    ]
    assert pod["nodeSelector"] == {"ml-endpoints.io/pool": "gpu-v100"}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-batch"


def test_remote_model_is_fetched_by_an_init_container():
    dep = deployment(model={"name": "cars", "version": "3", "path": "s3://models/cars/3"})
    job = build_job_template(endpoint(), dep, cpu(), SETTINGS, IMAGE)
    assert validate_object(job) == []
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == [
        "python",
        "-m",
        "serving.fetch_model",
        "--uri",
        "s3://models/cars/3",
        "--dest",
        "/var/azureml-app/azureml-models/cars/3",
    ]


def test_bad_priority_tag_names_deployment_and_value():
    with pytest.raises(SpecError, match=r"deployment alice: tags.priority: got 'urgent'; use low or normal"):
        priority_of(deployment(tags={"priority": "urgent"}))


def test_job_api_objects_validate_and_role_is_limited_to_jobs():
    ep = endpoint(defaults={"deployment_name": "alice"})
    objs = build_job_api_objects(ep, ["alice", "bob"], SETTINGS, IMAGE)
    template = build_job_template(ep, deployment(), cpu(), SETTINGS, IMAGE)
    objs += [
        build_template_config_map(ep, deployment(), template, SETTINGS),
        build_keys_secret(ep, SETTINGS),
        build_job_api_route(ep, SETTINGS),
        *build_batch_priority_classes(),
        build_endpoint_local_queue(ep, SETTINGS, BatchOptions()),
    ]
    assert validate_objects(objs) == []
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert kinds == [
        ("ServiceAccount", "cars-batch-jobs"),
        ("Role", "cars-batch-jobs"),
        ("RoleBinding", "cars-batch-jobs"),
        ("Deployment", "cars-batch-jobs"),
        ("Service", "cars-batch-jobs"),
        ("ConfigMap", "cars-batch-alice-batch-template"),
        ("Secret", "cars-batch-keys"),
        ("HTTPRoute", "cars-batch"),
        ("PriorityClass", "ml-endpoints-batch"),
        ("PriorityClass", "ml-endpoints-batch-low"),
        ("LocalQueue", "cars-batch-batch"),
    ]
    role = objs[1]
    assert role["rules"][0] == {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["create", "get", "list", "watch", "patch", "delete"],
    }
    pod = objs[3]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][-2:] == ["--default-deployment", "alice"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ENDPOINTS_AUTH_MODE"] == "key"
    assert env["ENDPOINTS_KEYS_DIR"] == "/etc/endpoints/keys"
    templates = next(v for v in pod["volumes"] if v["name"] == "templates")
    assert templates["projected"]["sources"] == [
        {"configMap": {"name": "cars-batch-alice-batch-template", "optional": True}},
        {"configMap": {"name": "cars-batch-bob-batch-template", "optional": True}},
    ]
    assert json.loads(objs[5]["data"]["alice.json"]) == template
    assert objs[9]["preemptionPolicy"] == "Never"
    assert jobs_uri(ep, SETTINGS) == "https://cars-batch.endpoints.example.com/jobs"
    assert objs[10]["spec"] == {"clusterQueue": "batch"}


def test_aad_token_job_api_needs_oidc_settings():
    with pytest.raises(SpecError, match="auth_mode aad_token needs stack config oidcIssuer"):
        build_job_api_objects(endpoint(auth_mode="aad_token"), ["alice"], SETTINGS, IMAGE)


# ---------------------------------------------------------------------------------------------- the launcher


@pytest.fixture
def apiserver():
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def launcher(apiserver):
    config = client.Configuration()
    config.host = apiserver.url
    api_client = client.ApiClient(config)
    template = build_job_template(endpoint(), deployment(), cpu(), SETTINGS, IMAGE)
    yield KubernetesLauncher("ml", {"alice": template}, api_client=api_client)
    api_client.close()


def make_api(launcher, output_root: str = "/mnt/batch/outputs/cars-batch"):
    return JobApi(
        launcher, "cars-batch", {"alice": template_settings(launcher.templates["alice"])}, "alice", output_root
    )


def test_submit_creates_a_valid_indexed_job_with_the_job_settings(apiserver, launcher):
    api = make_api(launcher)
    request = api.request_for(
        JobSubmission(input="s3://cars/images/", settings={"instance_count": 2, "mini_batch_size": 5}, job_id="job-7")
    )
    info = launcher.submit(request)
    assert info.status == "Queued"
    assert info.id == "job-7"
    assert info.output == "/mnt/batch/outputs/cars-batch/job-7"
    [post] = [r for r in apiserver.requests if r["method"] == "POST"]
    assert post["path"] == "/apis/batch/v1/namespaces/ml/jobs"
    job = post["body"]
    assert validate_object(job) == []
    assert job["metadata"]["name"] == "job-7"
    assert job["metadata"]["labels"]["ml-endpoints.io/batch-job"] == "job-7"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "cars-batch-batch"
    assert (job["spec"]["parallelism"], job["spec"]["completions"]) == (2, 2)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = json.loads(env["ENDPOINTS_BATCH_SETTINGS"])
    assert settings["input"] == "s3://cars/images/"
    assert settings["output_dir"] == "/mnt/batch/outputs/cars-batch/job-7"
    assert settings["job_id"] == "job-7"
    assert settings["mini_batch_size"] == 5
    assert settings["max_retries"] == 2


def test_state_is_read_back_from_the_job(apiserver, launcher):
    api = make_api(launcher)
    launcher.submit(api.request_for(JobSubmission(input="/mnt/batch/in", job_id="job-1")))
    job = apiserver.jobs[("ml", "job-1")]
    job["spec"]["suspend"] = False
    job["status"] = {"active": 3, "ready": 3, "startTime": "2026-11-23T12:00:05Z"}
    info = launcher.get("job-1")
    assert info.status == "Running"
    assert info.counts["active"] == 3
    job["status"] = {
        "succeeded": 3,
        "completedIndexes": "0-2",
        "completionTime": "2026-11-23T12:10:00Z",
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-23T12:10:00Z"}],
    }
    info = launcher.get("job-1")
    assert info.status == "Completed"
    assert info.progress == {"instances_done": 3, "instances": 3, "percent": 100.0}
    assert info.deployment == "alice"
    assert info.endpoint == "cars-batch"
    assert info.input == "/mnt/batch/in"
    assert [j.id for j in launcher.list()] == ["job-1"]
    list_request = next(r for r in apiserver.requests if r["method"] == "GET" and r["path"].endswith("/jobs"))
    assert list_request["query"] == {"labelSelector": ["ml-endpoints.io/batch-job"]}


def test_failed_job_reports_the_condition():
    job = {
        "metadata": {"name": "j", "creationTimestamp": "2026-11-23T12:00:00Z"},
        "spec": {"completions": 2, "template": {"spec": {"containers": [{"name": "runner", "env": []}]}}},
        "status": {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "PodFailurePolicy",
                    "message": "Container runner for pod ml/j-0 failed with exit code 3 matching FailJob rule at index 0",
                },
            ],
        },
    }
    info = job_info(job)
    assert info.status == "Failed"
    assert info.error == (
        "PodFailurePolicy: Container runner for pod ml/j-0 failed with exit code 3 matching FailJob rule at index 0"
    )


def test_failed_job_reports_the_runners_own_reason_from_its_pods(apiserver, launcher):
    """Issue 13 item 11 on Kubernetes: the reason the runner wrote to its termination log reaches the job's error."""
    api = make_api(launcher)
    launcher.submit(api.request_for(JobSubmission(input="/mnt/batch/missing", job_id="job-5")))
    apiserver.jobs[("ml", "job-5")]["status"] = {
        "failed": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailurePolicy",
                "message": "Container runner for pod ml/job-5-0-x failed with exit code 3 matching FailJob rule at index 0",
            },
        ],
    }
    reason = "input: /mnt/batch/missing: no such file or folder"
    terminated = {"terminated": {"exitCode": 3, "message": reason}}
    labels = {"ml-endpoints.io/batch-job": "job-5"}
    apiserver.pods[("ml", "job-5-0-x")] = {
        "labels": labels,
        "log": "",
        "status": {"containerStatuses": [{"name": "runner", "state": terminated}]},
    }
    apiserver.pods[("ml", "job-5-1-y")] = {
        "labels": labels,
        "log": "",
        "status": {"containerStatuses": [{"name": "runner", "state": terminated}]},
    }
    apiserver.pods[("ml", "job-5-2-z")] = {
        "labels": labels,
        "log": "",
        "status": {
            "containerStatuses": [{"name": "runner", "state": {"terminated": {"exitCode": 0, "message": "fine"}}}]
        },
    }
    info = launcher.get("job-5")
    assert info.status == "Failed"
    assert info.error == (
        "PodFailurePolicy: Container runner for pod ml/job-5-0-x failed with exit code 3 matching FailJob rule at"
        f" index 0; runner: {reason}"
    )


def test_cancel_suspends_and_annotates_then_refuses_twice(apiserver, launcher):
    api = make_api(launcher)
    launcher.submit(api.request_for(JobSubmission(input="/in", job_id="job-2")))
    info = launcher.cancel("job-2")
    assert info.status == "Canceled"
    [patch] = [r for r in apiserver.requests if r["method"] == "PATCH"]
    assert patch["path"] == "/apis/batch/v1/namespaces/ml/jobs/job-2"
    assert patch["content_type"] == "application/merge-patch+json"
    assert patch["body"]["spec"] == {"suspend": True}
    assert "ml-endpoints.io/canceled" in patch["body"]["metadata"]["annotations"]
    with pytest.raises(JobConflictError, match="batch job 'job-2' is Canceled; only Queued or Running jobs can be"):
        launcher.cancel("job-2")


def test_unknown_and_duplicate_jobs(apiserver, launcher):
    api = make_api(launcher)
    with pytest.raises(JobNotFoundError, match="no batch job 'nope'"):
        launcher.get("nope")
    request = api.request_for(JobSubmission(input="/in", job_id="job-3"))
    launcher.submit(request)
    with pytest.raises(
        JobConflictError, match=re.escape('batch job already exists: jobs.batch "job-3" already exists')
    ):
        launcher.submit(request)


def test_build_job_keeps_the_template_untouched():
    template = build_job_template(endpoint(), deployment(), cpu(), SETTINGS, IMAGE)
    before = json.dumps(template, sort_keys=True)
    api = JobApi(None, "cars-batch", {"alice": template_settings(template)}, None, "/out")  # type: ignore[arg-type]
    build_job(template, api.request_for(JobSubmission(input="/in", job_id="x1")), "ml")
    assert json.dumps(template, sort_keys=True) == before


def test_row_counts_come_from_the_shared_output_volume(apiserver, launcher, tmp_path):
    import subprocess
    import sys

    from batch_helpers import REPO, SCORE, make_inputs

    make_inputs(tmp_path / "in", 12)
    api = make_api(launcher, output_root=str(tmp_path / "outputs"))  # the shared volume, here a local folder
    request = api.request_for(
        JobSubmission(input=str(tmp_path / "in"), output="out", job_id="job-9", settings={"instance_count": 1})
    )
    launcher.submit(request)
    # The runner pod (here: a local process with the same settings) writes to the volume the API also mounts.
    settings = {**request.settings, "entry_script": str(SCORE), "model_dir": None, "environment_variables": {}}
    (tmp_path / "s.json").write_text(json.dumps(settings))
    proc = subprocess.run(
        [sys.executable, "-m", "serving.batch.runner", "--settings", str(tmp_path / "s.json")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    info = launcher.get("job-9")
    assert info.status == "Queued"  # the stand-in API server never started the Job
    assert info.counts["rows"] == 12
    assert info.counts["mini_batches"] == {"total": 1, "done": 1, "failed": 0}
    assert info.progress["done"] == 1
    assert info.progress["instances"] == 1


def test_logs_read_each_pod_of_the_job(apiserver, launcher):
    api = make_api(launcher)
    launcher.submit(api.request_for(JobSubmission(input="/in", job_id="job-9")))
    stamp = "2026-11-23T12:00:0{}Z "
    apiserver.pods[("ml", "job-9-0-abcde")] = {
        "labels": {"ml-endpoints.io/batch-job": "job-9"},
        "log": "".join(stamp.format(i) + f"runner 0 line {i}\n" for i in range(5)),
    }
    apiserver.pods[("ml", "job-9-1-fghij")] = {"labels": {"ml-endpoints.io/batch-job": "job-9"}, "log": ""}
    apiserver.pods[("ml", "other-0-xyz")] = {"labels": {"ml-endpoints.io/batch-job": "other"}, "log": "no\n"}
    assert launcher.logs("job-9", 2) == {"job-9-0-abcde": "runner 0 line 3\nrunner 0 line 4\n", "job-9-1-fghij": ""}
    listing = next(r for r in apiserver.requests if r["path"] == "/api/v1/namespaces/ml/pods")
    assert listing["query"] == {"labelSelector": ["ml-endpoints.io/batch-job=job-9"]}
    with pytest.raises(JobNotFoundError, match="no batch job 'nope'"):
        launcher.logs("nope", 10)


def test_outputs_of_another_endpoint_on_the_shared_volume_are_refused(apiserver, launcher):
    """Issue 13 item 8: the job API confines outputs to its endpoint's root on the shared volume."""
    api = make_api(launcher)
    for output in ("/mnt/batch/outputs/vans-batch/nightly", "../vans-batch/nightly", "/mnt/batch/outputs"):
        with pytest.raises(BadRequestError) as e:
            api.request_for(
                JobSubmission(input="s3://cars/", output=output, job_id="job-x", settings={"overwrite": True})
            )
        assert str(e.value) == (
            f"output: got {output!r}; outputs of endpoint 'cars-batch' must be folders under "
            "/mnt/batch/outputs/cars-batch (e.g. /mnt/batch/outputs/cars-batch/nightly-2024-06-01)"
        )
    own = api.request_for(JobSubmission(input="s3://cars/", output="nightly", job_id="job-y"))
    assert own.output == "/mnt/batch/outputs/cars-batch/nightly"
