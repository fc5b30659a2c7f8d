"""Endpoint folders: cross-file rules, registry references, local paths, custom instance types."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from endpoints.errors import SpecError
from endpoints.project import load_endpoint_project
from endpoints.specs import ModelAsset, OnlineDeployment


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def deployment(name: str, extra: str = "") -> str:
    return (
        f"name: {name}\nendpoint_name: cars\nmodel: {{path: ../model}}\n"
        "code_configuration: {code: ../code, scoring_script: score.py}\n"
        f"environment: {{image: python:3.11-slim}}\ninstance_type: Standard_DS3_v2\n{extra}"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "endpoint.yml": "name: cars\ntraffic: {alice: 90, bob: 10}\n",
            "deployments/alice.yml": deployment("alice"),
            "deployments/bob.yml": deployment("bob"),
            "code/score.py": "def init():\n    pass\n\n\ndef run(raw):\n    return raw\n",
            "model/weights.json": "{}",
        },
    )


def messages(root: Path, endpoint_file: str = "endpoint.yml") -> list[str]:
    with pytest.raises(SpecError) as info:
        load_endpoint_project(root, endpoint_file)
    return [str(p).replace(str(root) + "/", "") for p in info.value.problems]


def test_valid_project(project: Path) -> None:
    loaded = load_endpoint_project(project)
    assert loaded.kind == "online"
    assert list(loaded.deployments) == ["alice", "bob"]
    assert loaded.local_path("alice", "../code") == (project / "code").resolve()


def test_traffic_names_missing_deployment(project: Path) -> None:
    write(project, {"endpoint.yml": "name: cars\ntraffic: {alice: 90, carol: 10}\nmirror_traffic: {dave: 5}\n"})
    assert messages(project) == [
        "endpoint.yml:2: traffic.carol: no deployment named 'carol' (deployments: alice, bob)",
        "endpoint.yml:3: mirror_traffic.dave: no deployment named 'dave' (deployments: alice, bob)",
    ]


def test_deployment_of_another_endpoint(project: Path) -> None:
    write(project, {"deployments/bob.yml": deployment("bob").replace("endpoint_name: cars", "endpoint_name: bikes")})
    assert messages(project) == ["deployments/bob.yml:2: endpoint_name: got 'bikes'; this folder's endpoint is 'cars'"]


def test_same_deployment_twice(project: Path) -> None:
    write(project, {"deployments/zed.yml": deployment("bob")})
    assert messages(project) == ["deployments/zed.yml:1: name: got 'bob'; another file already defines this deployment"]


def test_missing_code_and_model(project: Path) -> None:
    write(
        project,
        {"deployments/bob.yml": deployment("bob").replace("../model", "../nomodel").replace("score.py", "x.py")},
    )
    assert messages(project) == [
        "deployments/bob.yml:4: code_configuration.scoring_script: got 'x.py'; no such file in deployments/../code",
        "deployments/bob.yml:3: model.path: got '../nomodel'; no such file or folder",
    ]


def test_every_file_reports_at_once(project: Path) -> None:
    write(
        project,
        {
            "endpoint.yml": "name: cars\ntraffic: {alice: 90, bob: 20}\n",
            "deployments/alice.yml": deployment("alice", "instance_count: 0\n"),
        },
    )
    assert messages(project) == [
        "endpoint.yml:2: traffic: got 90+10=110; live traffic must sum to 0 or 100".replace("90+10", "90+20"),
        "deployments/alice.yml:7: instance_count: got 0; input should be greater than or equal to 1",
    ]


def test_registry_references_resolve(project: Path) -> None:
    write(
        project,
        {
            "registry.yml": """\
                models:
                  - {name: car-model, version: 1, path: model}
                  - {name: car-model, version: 2, path: model, type: mlflow_model}
                environments:
                  - {name: sk-env, version: "3", image: python:3.11-slim}
            """,
            "deployments/alice.yml": deployment("alice")
            .replace("model: {path: ../model}", "model: azureml:car-model:1")
            .replace("environment: {image: python:3.11-slim}", "environment: azureml:sk-env:3"),
            "deployments/bob.yml": deployment("bob").replace(
                "model: {path: ../model}", "model: azureml:car-model@latest"
            ),
        },
    )
    loaded = load_endpoint_project(project)
    alice, bob = loaded.deployments["alice"], loaded.deployments["bob"]
    assert isinstance(alice, OnlineDeployment) and isinstance(bob, OnlineDeployment)
    assert isinstance(alice.model, ModelAsset) and isinstance(bob.model, ModelAsset)
    assert (alice.model.name, alice.model.version, alice.model.path) == ("car-model", "1", str(project / "model"))
    assert (bob.model.version, bob.model.type) == ("2", "mlflow_model")


def test_unresolved_references_name_the_reference(project: Path) -> None:
    write(
        project,
        {
            "registry.yml": "models:\n  - {name: car-model, version: 1, path: model}\n",
            "deployments/alice.yml": deployment("alice").replace(
                "model: {path: ../model}", "model: azureml:car-model:7"
            ),
            "deployments/bob.yml": deployment("bob").replace("model: {path: ../model}", "model: azureml:truck@latest"),
        },
    )
    assert messages(project) == [
        "deployments/alice.yml:3: model: 'azureml:car-model:7': model 'car-model' has no version '7' in "
        "registry.yml (versions: 1)",
        "deployments/bob.yml:3: model: 'azureml:truck@latest': no model named 'truck' in registry.yml"
        " (known: car-model)",
    ]


def test_project_instance_types_extend_the_catalog(project: Path) -> None:
    write(
        project,
        {
            "instance_types.yml": "instance_types:\n  my-gpu: {vcpu: 8, memory_gib: 64, gpu_count: 1, pool: gpu-l4}\n",
            "deployments/bob.yml": deployment("bob").replace("Standard_DS3_v2", "my-gpu"),
        },
    )
    loaded = load_endpoint_project(project)
    assert loaded.catalog.get("my-gpu").pool == "gpu-l4"


def test_batch_project_default_deployment(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "endpoint.yml": "name: batchy\ndefaults: {deployment_name: nope}\n",
            "deployments/scorer.yml": "name: scorer\nendpoint_name: batchy\n"
            "code_configuration: {code: ../code, scoring_script: d.py}\nenvironment: {image: python:3.11-slim}\n",
            "code/d.py": "def run(b):\n    return b\n",
        },
    )
    assert messages(tmp_path) == [
        "endpoint.yml:2: defaults.deployment_name: got 'nope'; no deployment of that name (deployments: scorer)"
    ]


def test_missing_endpoint_file(tmp_path: Path) -> None:
    assert messages(tmp_path) == ["endpoint.yml: no such file; an endpoint folder holds endpoint.yml"]
