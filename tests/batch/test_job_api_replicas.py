"""Several job API replicas over one cluster: what one replica submits, any other reads, lists and cancels.

The Kubernetes launcher keeps no job state in its process (every answer is read back from the Job objects), so
the stacks run the job API with 2-3 replicas behind one Service. Two replicas here are two job API apps, each
with its own launcher and API client, over one loopback stand-in API server; their templates are the files the
prod stack's template ConfigMap projects into the pods.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_apiserver import FakeApiServer
from kubernetes import client

from components.builders.stack import render_stack
from components.builders.stack_config import load_stack_config, settings_from_config
from serving.batch.api import JobApi, build_app
from serving.batch.launchers.kubernetes import KubernetesLauncher, load_templates, template_settings

REPO = Path(__file__).resolve().parents[2]


class Replica:
    """One job API replica, called in process through ``httpx.ASGITransport``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://jobs") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


@pytest.fixture
def replicas(tmp_path: Path):
    rendered = render_stack(settings_from_config(load_stack_config(REPO, "prod")), REPO)
    [cm] = [o for o in rendered.objects if o["kind"] == "ConfigMap"]
    templates_dir = tmp_path / "batch-templates"
    templates_dir.mkdir()
    for name, text in cm["data"].items():  # what the projected ConfigMap volume shows the pods
        (templates_dir / name).write_text(text, encoding="utf-8")
    with FakeApiServer() as server:
        api_clients, apps = [], []
        for _ in range(2):
            config = client.Configuration()
            config.host = server.url
            api_client = client.ApiClient(config)
            api_clients.append(api_client)
            templates = load_templates(templates_dir)
            launcher = KubernetesLauncher("ml-prod", templates, api_client=api_client)
            settings = {name: template_settings(t) for name, t in templates.items()}
            apps.append(JobApi(launcher, "car-classifier-batch", settings, "nightly", "/mnt/batch/outputs"))
        try:
            yield Replica(build_app(apps[0])), Replica(build_app(apps[1])), server
        finally:
            for api_client in api_clients:
                api_client.close()


def test_any_replica_answers_for_a_job_another_submitted(replicas) -> None:
    a, b, server = replicas
    submitted = a.post("/jobs", json={"input": "/mnt/batch/inputs/photos", "job_id": "photos-1"})
    assert submitted.status_code == 202, submitted.text
    assert submitted.headers["location"] == "/jobs/photos-1"
    job = submitted.json()
    assert (job["status"], job["deployment"], job["output"]) == ("Queued", "nightly", "/mnt/batch/outputs/photos-1")
    assert job["settings"]["instance_count"] == 4  # prod's override of the example's 2
    [created] = server.jobs.values()
    assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "car-classifier-batch-batch"

    seen = b.get("/jobs/photos-1")
    assert seen.status_code == 200
    assert {k: seen.json()[k] for k in ("id", "status", "input", "output")} == {
        "id": "photos-1",
        "status": "Queued",
        "input": "/mnt/batch/inputs/photos",
        "output": "/mnt/batch/outputs/photos-1",
    }
    assert [j["id"] for j in b.get("/jobs").json()["jobs"]] == ["photos-1"]

    again = b.post("/jobs", json={"input": "/mnt/batch/inputs/other", "job_id": "photos-1"})
    assert again.status_code == 409
    assert again.json() == {"error": 'batch job already exists: jobs.batch "photos-1" already exists'}

    canceled = b.post("/jobs/photos-1/cancel")
    assert (canceled.status_code, canceled.json()["status"]) == (202, "Canceled")
    assert a.get("/jobs/photos-1").json()["status"] == "Canceled"
    twice = a.post("/jobs/photos-1/cancel")
    assert twice.status_code == 409
    assert twice.json() == {"error": "batch job 'photos-1' is Canceled; only Queued or Running jobs can be canceled"}


def test_the_projected_templates_are_the_stacks(replicas, tmp_path: Path) -> None:
    template = json.loads((tmp_path / "batch-templates" / "nightly.json").read_text(encoding="utf-8"))
    pod = template["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith("registry.example.com/ml/car-classifier-batch-nightly@sha256:")
    assert pod["nodeSelector"] == {"ml-endpoints.io/pool": "cpu"}
