"""Azure ML deployment folders that Azure accepts validate here too (``endpoints validate``, a real process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ENDPOINT = "name: cars\nauth_mode: key\ntraffic:\n  blue: 100\n"


def deployment(extra: str = "", instance_type: str = "Standard_DS3_v2", name: str = "blue") -> str:
    return (
        textwrap.dedent(
            f"""\
        $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
        name: {name}
        endpoint_name: cars
        code_configuration:
          code: code
          scoring_script: score.py
        environment:
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
        instance_type: {instance_type}
        """
        )
        + extra
    )


def validate(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", "validate", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "cars"
    for rel, text in {"endpoint.yml": ENDPOINT, **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_azure_sample_layouts_are_read(tmp_path: Path) -> None:
    from endpoints.project import load_endpoint_project

    # Azure's samples: <name>-deployment.yml beside endpoint.yml, or deployment-<name>/deployment.yml.
    files = {
        "blue-deployment.yml": deployment(),
        "deployment-green/deployment.yml": deployment(name="green").replace("code: code", "code: ../code"),
        "code/score.py": "",
        "environment/conda.yml": "dependencies:\n  - python=3.11\n",  # YAML that is no deployment: skipped
    }
    root = _folder(tmp_path, files)
    project = load_endpoint_project(root)
    assert sorted(project.deployments) == ["blue", "green"]
    assert project.deployment_file("green") == root / "deployment-green" / "deployment.yml"
    result = validate(root)
    assert result.returncode == 0, result.stderr
    assert f"ok: {root}" in result.stdout


def test_no_deployment_file_is_refused_saying_where_they_go(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"endpoint.yml": "name: cars\n", "conda.yml": "dependencies:\n  - python=3.11\n"})
    result = validate(root)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{root}: deployments: got no deployment files; put each deployment in deployments/<name>.yml, or beside"
        " endpoint.yml as Azure's samples do (<name>-deployment.yml, or <folder>/deployment.yml: any YAML file"
        " naming endpoint_name)"
    )


def test_instance_type_is_case_insensitive_and_tags_take_any_scalar(tmp_path: Path) -> None:
    extra = "tags:\n  owner: ml-team\n  version: 3\n  reviewed: true\n  ratio: 0.5\n  empty:\n"
    root = _folder(tmp_path, {"blue-deployment.yml": deployment(extra, "STANDARD_NC4AS_T4_V3"), "code/score.py": ""})
    from endpoints.project import load_endpoint_project

    project = load_endpoint_project(root)
    spec = project.deployments["blue"]
    assert spec.instance_type == "Standard_NC4as_T4_v3"
    assert spec.tags == {"owner": "ml-team", "version": "3", "reviewed": "true", "ratio": "0.5", "empty": ""}
    assert validate(root).returncode == 0


def test_unknown_instance_type_and_nested_tag_name_the_value(tmp_path: Path) -> None:
    extra = "tags:\n  owner:\n    team: ml\n"
    root = _folder(tmp_path, {"blue-deployment.yml": deployment(extra, "standard_xx9"), "code/score.py": ""})
    result = validate(root)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"{root / 'blue-deployment.yml'}:") for line in lines), lines
    assert len(lines) == 2, lines
    text = "\n".join(lines)
    assert "tags.owner: got {'team': 'ml'}; a tag value is a single value (text, number, boolean or empty)" in text
    assert ": instance_type: unknown instance type 'standard_xx9'; known types: " in text
    assert "Standard_NC4as_T4_v3" in text


def test_mlflow_model_needs_no_environment(tmp_path: Path) -> None:
    mlflow = (
        "name: blue\nendpoint_name: cars\nmodel:\n  path: model\n  type: mlflow_model\ninstance_type: Standard_DS3_v2\n"
    )
    root = _folder(tmp_path, {"deployments/blue.yml": mlflow, "deployments/model/MLmodel": "flavors: {}\n"})
    assert validate(root).returncode == 0
    custom = mlflow.replace("type: mlflow_model", "type: custom_model")
    (root / "deployments" / "blue.yml").write_text(custom)
    result = validate(root)
    assert result.returncode == 1
    assert (
        "environment: missing; name an environment (inline image or azureml: reference); only an MLflow model"
        " (model.type: mlflow_model) with no code_configuration or a Triton model (triton_model) may omit it, as on"
        " Azure"
    ) in " ".join(result.stderr.split())


def test_triton_needs_no_environment_nor_code_and_environment_image_is_noted(tmp_path: Path) -> None:
    triton = (
        "name: blue\nendpoint_name: cars\nmodel:\n  path: model\n  type: triton_model\ninstance_type: Standard_DS3_v2\n"
    )
    root = _folder(tmp_path, {"deployments/blue.yml": triton, "deployments/model/m/config.pbtxt": ""})
    result = validate(root)
    assert result.returncode == 0, result.stderr
    with_code = triton + "code_configuration: {code: ., scoring_script: score.py}\n"
    (root / "deployments" / "blue.yml").write_text(with_code)
    result = validate(root)
    assert result.returncode == 1
    assert (
        "code_configuration: a triton_model deployment is served by Triton Inference Server with no scoring script"
        " here; drop code_configuration (or serve the model as custom_model with a script)"
    ) in " ".join(result.stderr.split())
    (root / "deployments" / "blue.yml").write_text(deployment().replace("code: code", "code: ../code"))
    (root / "code").mkdir()
    (root / "code" / "score.py").write_text("")
    result = validate(root)
    assert result.returncode == 0, result.stderr
    assert (
        f"note: {root / 'deployments' / 'blue.yml'}: environment.image: 'mcr.microsoft.com/azureml/openmpi4.1.0-"
        "ubuntu20.04:latest' is one of Azure's curated inference images; on the cluster the deployment image is built"
        " on the stack's serving image instead (stack setting ml-endpoints:baseImageRedirects); local mode runs in"
        " this machine's Python"
    ) in " ".join(result.stdout.split())


def test_validate_says_what_a_batch_deployment_does_with_environment_image(tmp_path: Path) -> None:
    """``endpoints validate`` of a batch folder: the cluster builds the batch runner and the deployment image on
    ``environment.image`` (Azure's curated images: on the stack's runner image); local mode runs in this Python."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    nightly = examples / "car-classifier-batch" / "deployments" / "nightly.yml"
    result = validate(examples / "car-classifier-batch")
    assert result.returncode == 0, result.stderr
    assert (
        f"note: {nightly}: environment.image: 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest' is one of"
        " Azure's curated inference images; on the cluster the deployment image is built on the stack's batch runner"
        " image instead (stack setting ml-endpoints:baseImageRedirects); local mode runs in this machine's Python"
    ) in " ".join(result.stdout.split())
    own = tmp_path / "nightly.yml"
    own.write_text(
        nightly.read_text()
        .replace("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest", "python:3.12-slim")
        .replace("../../car-classifier", str(examples / "car-classifier"))
    )
    result = validate(own)
    assert result.returncode == 0, result.stderr
    assert (
        f"note: {own}: environment.image: 'python:3.12-slim': on the cluster the batch runner and the deployment"
        " image are built on it (it needs python3 >= 3.11 with venv; ml-endpoints:baseImageRedirects may redirect"
        " it); local mode runs in this machine's Python"
    ) in " ".join(result.stdout.split())
