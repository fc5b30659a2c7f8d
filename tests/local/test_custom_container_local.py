"""Local mode with a custom container when no podman is there, and with a Triton model: clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BYOC = """
name: own
endpoint_name: summer
instance_type: Standard_DS3_v2
environment:
  image: localhost/byoc-sum:test
  inference_config:
    liveness_route: {port: 8080, path: /alive}
    readiness_route: {port: 8080, path: /healthy}
    scoring_route: {port: 8080, path: /predict}
"""
TRITON = """
name: own
endpoint_name: summer
instance_type: Standard_DS3_v2
model: {path: ../models/triton, type: triton_model}
"""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            BYOC,
            "environment.inference_config: a custom container runs locally with podman, and '/nonexistent/podman' is"
            " not installed (apt-get install podman, or set ENDPOINTS_PODMAN); or deploy it to a cluster",
            id="byoc-without-podman",
        ),
        pytest.param(
            TRITON,
            "model.type: got 'triton_model'; local mode has no Triton Inference Server (deploy it to a cluster, or run"
            " a Triton image as a custom container: environment.image + inference_config, with podman)",
            id="triton",
        ),
    ],
)
def test_local_up_refuses_with_what_to_do(tmp_path: Path, spec: str, message: str) -> None:
    root = tmp_path / "summer"
    (root / "deployments").mkdir(parents=True)
    (root / "models" / "triton").mkdir(parents=True)
    (root / "endpoint.yml").write_text("name: summer\ntraffic: {own: 100}\n")
    deployment = root / "deployments" / "own.yml"
    deployment.write_text(textwrap.dedent(spec).lstrip())
    env = {
        **os.environ,
        "ENDPOINTS_STATE_DIR": str(tmp_path / "state"),
        "ENDPOINTS_PODMAN": "/nonexistent/podman",
        "COLUMNS": "400",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", "local", "up", str(root), "--detach", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{deployment}: {message}" in " ".join(proc.stderr.split())


def test_podman_run_mounts_the_code_where_azure_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from endpoints.local.container import container_command
    from endpoints.project import load_endpoint_project
    from endpoints.specs import OnlineDeployment

    root = tmp_path / "summer"
    (root / "deployments").mkdir(parents=True)
    (root / "serve-code").mkdir()
    (root / "serve-code" / "serve.py").write_text("")
    (root / "models" / "m").mkdir(parents=True)
    (root / "endpoint.yml").write_text("name: summer\ntraffic: {own: 100}\n")
    spec = textwrap.dedent(BYOC).lstrip() + (
        "model: {name: summer-model, version: 3, path: ../models/m}\n"
        "code_configuration: {code: ../serve-code, scoring_script: serve.py}\n"
    )
    (root / "deployments" / "own.yml").write_text(spec)
    deployment = load_endpoint_project(root).deployments["own"]
    monkeypatch.setenv("ENDPOINTS_PODMAN", f"{sys.executable} -c pass")
    assert isinstance(deployment, OnlineDeployment)
    argv = container_command(deployment, "c1", root / "models" / "m", {"AZUREML_MODEL_DIR": "/m"}, root / "serve-code")
    assert argv == [
        sys.executable,
        "-c",
        "pass",
        "run",
        "--rm",
        "--replace",
        "--name",
        "c1",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=256m",
        "--user",
        "10001",
        "--cap-drop",
        "ALL",
        "--network",
        "host",
        "-e",
        "AZUREML_MODEL_DIR=/m",
        "-e",
        "AML_APP_ROOT=/var/azureml-app",
        "-e",
        "AZUREML_ENTRY_SCRIPT=serve-code/serve.py",
        "-v",
        f"{root / 'models' / 'm'}:/var/azureml-app/azureml-models/summer-model/3/m:ro",
        "-v",
        f"{root / 'serve-code'}:/var/azureml-app/serve-code:ro",
        "localhost/byoc-sum:test",
    ]


def test_local_scoring_uri_ends_in_the_primary_deployments_scoring_route() -> None:
    from endpoints.local.state import EndpointState, ProcessRecord
    from endpoints.sdk.local_access import endpoint_urls

    record = ProcessRecord(pid=1, start_time=1, port=9000)
    state = EndpointState(
        endpoint="summer",
        project_dir="/x",
        router=ProcessRecord(pid=2, start_time=1, port=8123),
        deployments={"own": record, "plain": record},
        traffic={"own": 90, "plain": 10},
        scoring_paths={"own": "/predict", "plain": "/score"},
    )
    assert endpoint_urls(state)["scoring_uri"] == "http://127.0.0.1:8123/predict"
    state.traffic = {"own": 10, "plain": 90}
    assert endpoint_urls(state)["scoring_uri"] == "http://127.0.0.1:8123/score"
    state.traffic = {}  # no live traffic: name order, as on the cluster
    assert endpoint_urls(state)["scoring_uri"] == "http://127.0.0.1:8123/predict"
    # A state written before scoring paths were recorded.
    old = EndpointState.from_dict({k: v for k, v in state.to_dict().items() if k != "scoring_paths"})
    assert endpoint_urls(old)["scoring_uri"] == "http://127.0.0.1:8123/score"
