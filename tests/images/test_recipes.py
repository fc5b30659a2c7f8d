"""The image build recipes (endpoints.images) and the Dockerfiles' static rules; no container engine needed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from endpoints.errors import SpecError
from endpoints.images import (
    DEFAULT_BASE_IMAGE,
    ImageBuild,
    azureml_model_dir,
    batch_image_build,
    conda_requirements,
    custom_base_image_build,
    deployment_image_build,
    environment_build,
    main,
    redirect_base_image,
    serving_image_build,
    user_base_image,
)
from endpoints.project import load_endpoint_project
from endpoints.specs import BatchDeployment, OnlineDeployment

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "car-classifier"
DOCKERFILES = [
    "serving/Dockerfile",
    "serving/Dockerfile.deployment",
    "serving/Dockerfile.batch",
    "serving/Dockerfile.custom-base",
]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _online(**fields: object) -> OnlineDeployment:
    data: dict[str, object] = {
        "name": "blue",
        "endpoint_name": "my-endpoint",
        "instance_type": "Standard_DS3_v2",
        "environment": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"},
        "code_configuration": {"code": "../src", "scoring_script": "score.py"},
    }
    data.update(fields)
    return OnlineDeployment.model_validate(data)


# --- conda -> pip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conda", "pip"),
    [
        pytest.param("scikit-learn=1.4", ["scikit-learn==1.4.*"], id="conda-fuzzy-version"),
        pytest.param("scikit-learn=1.4.*", ["scikit-learn==1.4.*"], id="conda-star"),
        pytest.param("numpy==1.26.4", ["numpy==1.26.4"], id="exact"),
        pytest.param("pandas 2.1.4 py311_0", ["pandas==2.1.4"], id="match-spec-with-build"),
        pytest.param("lightgbm=4.3.0=py311h1", ["lightgbm==4.3.0.*"], id="build-string-dropped"),
        pytest.param("conda-forge::pillow>=10", ["pillow>=10"], id="channel-prefix"),
        pytest.param("scipy >=1.11, <2", ["scipy>=1.11,<2"], id="range-with-spaces"),
        pytest.param("pytorch=2.1", ["torch==2.1.*"], id="renamed-on-pypi"),
        pytest.param("requests", ["requests"], id="bare-name"),
        pytest.param("python=3.11", [], id="python-skipped"),
        pytest.param("pip=23.3", [], id="pip-skipped"),
        pytest.param("_libgcc_mutex", [], id="conda-internal-skipped"),
        pytest.param("cudatoolkit=11.8", [], id="native-toolkit-skipped"),
    ],
)
def test_conda_packages_become_pip_requirements(tmp_path: Path, conda: str, pip: list[str]) -> None:
    env = _write(tmp_path / "conda.yaml", f"dependencies:\n  - {conda!r}\n")
    assert conda_requirements(env) == pip


def test_pip_section_kept_and_azure_serving_packages_dropped(tmp_path: Path) -> None:
    env = _write(
        tmp_path / "conda.yaml",
        """
        name: test
        channels: [conda-forge]
        dependencies:
          - python=3.11
          - pip
          - pip:
              - azureml-defaults
              - azureml-inference-server-http==1.5.0
              - inference-schema[numpy-support]>=1.8
              - lightgbm>=4.3,<5
        """,
    )
    assert conda_requirements(env) == ["inference-schema[numpy-support]>=1.8", "lightgbm>=4.3,<5"]


def test_requirements_txt_read_as_pip_file(tmp_path: Path) -> None:
    env = _write(tmp_path / "requirements.txt", "# pinned\nscikit-learn==1.5.2\n\n  pillow>=10  \n")
    assert conda_requirements(env) == ["scikit-learn==1.5.2", "pillow>=10"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "dependencies: numpy\n", "dependencies: got 'numpy'; expected a list of packages", id="not-a-list"
        ),
        pytest.param(
            "dependencies:\n  - {conda: [numpy]}\n",
            "dependencies[0]: got {'conda': ['numpy']}; expected a package spec or a `pip:` list",
            id="unknown-mapping",
        ),
        pytest.param(
            "dependencies:\n  - '>=1'\n", "dependencies[0]: got '>=1'; not a conda package spec", id="no-name"
        ),
    ],
)
def test_bad_conda_file_names_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    env = _write(tmp_path / "conda.yaml", text)
    with pytest.raises(SpecError) as e:
        conda_requirements(env)
    assert str(e.value) == f"{env}: {message}"


def test_module_cli_prints_requirements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = _write(tmp_path / "conda.yaml", "dependencies:\n  - numpy=1.26\n  - pip:\n      - pillow\n")
    assert main(["requirements", str(env)]) == 0
    assert capsys.readouterr().out == "numpy==1.26.*\npillow\n"
    assert main(["requirements"]) == 0  # no environment file: nothing to install
    assert capsys.readouterr().out == ""
    assert main(["install"]) == 2
    assert capsys.readouterr().err == "usage: python -m endpoints.images requirements [ENV_FILE]\n"
    assert main(["requirements", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml" in capsys.readouterr().err


# --- recipes ---------------------------------------------------------------------------------------------


def test_car_classifier_recipe() -> None:
    project = load_endpoint_project(EXAMPLE)
    recipe = deployment_image_build(
        project.deployments["alice"], project.deployment_file("alice"), "localhost/endpoints-serving:dev", project.root
    )
    assert recipe == ImageBuild(
        context=EXAMPLE.resolve(),
        dockerfile=REPO_ROOT / "serving" / "Dockerfile.deployment",
        args={
            "BASE_IMAGE": "localhost/endpoints-serving:dev",
            "CODE_DIR": "code",
            "SCORING_SCRIPT": "score_alice.py",
            "CONDA_FILE": "environment/conda-alice.yaml",
            "MODEL_PATH": "models/alice",
            "MODEL_NAME": "alice",
            "MODEL_DIR": "/var/azureml-app/azureml-models/model/1",
        },
        env={
            "AML_APP_ROOT": "/var/azureml-app",
            "AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/model/1",
            "AZUREML_ENTRY_SCRIPT": "score_alice.py",
        },
    )
    assert recipe.podman_args() == [
        "-f",
        str(REPO_ROOT / "serving" / "Dockerfile.deployment"),
        "--build-arg",
        "BASE_IMAGE=localhost/endpoints-serving:dev",
        "--build-arg",
        "CODE_DIR=code",
        "--build-arg",
        "CONDA_FILE=environment/conda-alice.yaml",
        "--build-arg",
        "MODEL_DIR=/var/azureml-app/azureml-models/model/1",
        "--build-arg",
        "MODEL_NAME=alice",
        "--build-arg",
        "MODEL_PATH=models/alice",
        "--build-arg",
        "SCORING_SCRIPT=score_alice.py",
        str(EXAMPLE.resolve()),
    ]


def test_components_use_the_same_recipe() -> None:
    # One source of truth: the OnlineDeployment component's build is this module's recipe.
    from components.builders.image import image_build_args

    project = load_endpoint_project(EXAMPLE)
    for name, spec in project.deployments.items():
        ours = deployment_image_build(spec, project.deployment_file(name), "serving:1", project.root)
        theirs = image_build_args(
            REPO_ROOT, project.root, project.deployment_file(name), spec, "car-classifier", "serving:1"
        )
        assert ours is not None
        assert (theirs.args, theirs.context, theirs.dockerfile) == (ours.args, ours.context, ours.dockerfile)


def test_context_defaults_to_common_folder_of_all_paths(tmp_path: Path) -> None:
    spec_file = tmp_path / "endpoint" / "deployments" / "blue.yml"
    spec = _online(
        code_configuration={"code": "../../shared/src", "scoring_script": "pkg/score.py"},
        model={"name": "cars", "version": 3, "path": "../model.pkl"},
        environment={"image": "python:3.11", "conda_file": "../env/conda.yml"},
    )
    recipe = deployment_image_build(spec, spec_file, "serving:1")
    assert recipe is not None
    assert recipe.context == tmp_path.resolve()
    assert recipe.args == {
        "BASE_IMAGE": "serving:1",
        "CODE_DIR": "shared/src",
        "SCORING_SCRIPT": "pkg/score.py",
        "CONDA_FILE": "endpoint/env/conda.yml",
        "MODEL_PATH": "endpoint/model.pkl",
        "MODEL_NAME": "model.pkl",  # a file model sits directly in AZUREML_MODEL_DIR
        "MODEL_DIR": "/var/azureml-app/azureml-models/cars/3",
    }


def test_path_outside_project_root_is_an_error(tmp_path: Path) -> None:
    spec_file = tmp_path / "endpoint" / "deployments" / "blue.yml"
    spec = _online(code_configuration={"code": "../../shared/src", "scoring_script": "score.py"})
    with pytest.raises(SpecError) as e:
        deployment_image_build(spec, spec_file, "serving:1", project_root=tmp_path / "endpoint")
    assert str(e.value) == (
        f"{spec_file}: code_configuration.code: got {str(tmp_path / 'shared' / 'src')!r}; it lies outside"
        f" {str(tmp_path / 'endpoint')!r}, the image's build context"
    )


def test_remote_model_is_not_baked_in_and_mount_path_wins(tmp_path: Path) -> None:
    spec = _online(model={"path": "s3://bucket/cars/"}, model_mount_path="/models/cars")
    recipe = deployment_image_build(spec, tmp_path / "deployments" / "blue.yml", "serving:1")
    assert recipe is not None
    assert (recipe.args["MODEL_PATH"], recipe.args["MODEL_DIR"]) == ("", "/models/cars")
    assert recipe.env["AZUREML_MODEL_DIR"] == "/models/cars"


def test_mlflow_model_without_code(tmp_path: Path) -> None:
    spec = _online(code_configuration=None, model={"path": "../model", "type": "mlflow_model"})
    recipe = deployment_image_build(spec, tmp_path / "deployments" / "blue.yml", "serving:1")
    assert recipe is not None
    assert (recipe.args["CODE_DIR"], recipe.args["SCORING_SCRIPT"], recipe.args["MODEL_PATH"]) == ("", "", "model")
    assert "AZUREML_ENTRY_SCRIPT" not in recipe.env


def test_custom_container_and_user_build_are_not_built_on_the_serving_image(tmp_path: Path) -> None:
    routes = {"port": 8000, "path": "/v2/health/ready"}
    custom = _online(
        environment={
            "image": "nvcr.io/nvidia/tritonserver:24.01-py3",
            "inference_config": {"liveness_route": routes, "readiness_route": routes, "scoring_route": routes},
        }
    )
    assert deployment_image_build(custom, tmp_path / "d.yml", "serving:1") is None
    user = _online(environment={"build": {"path": "../docker"}})
    assert deployment_image_build(user, tmp_path / "deployments" / "d.yml", "serving:1") is None
    assert environment_build(user, tmp_path / "deployments" / "d.yml", "serving:1") == ImageBuild(
        context=(tmp_path / "docker").resolve(),
        dockerfile=(tmp_path / "docker" / "Dockerfile").resolve(),
        args={"BASE_IMAGE": "serving:1"},
    )


def test_unresolved_reference_is_an_error(tmp_path: Path) -> None:
    spec = _online(environment="azureml:sklearn-env:3")
    with pytest.raises(SpecError) as e:
        deployment_image_build(spec, tmp_path / "blue.yml", "serving:1")
    assert str(e.value) == (
        f"{tmp_path / 'blue.yml'}: environment: got 'azureml:sklearn-env:3'; resolve the reference (registry.yml)"
        " before building"
    )


def test_batch_deployment_recipe(tmp_path: Path) -> None:
    spec = BatchDeployment.model_validate(
        {
            "name": "stats",
            "endpoint_name": "files",
            "type": "model",
            "model": {"name": "m", "version": "2", "path": "../model"},
            "code_configuration": {"code": "../code", "scoring_script": "batch_score.py"},
            "environment": {"image": "python:3.11"},
        }
    )
    recipe = deployment_image_build(spec, tmp_path / "deployments" / "stats.yml", "runner:1")
    assert recipe is not None
    assert recipe.args["MODEL_DIR"] == azureml_model_dir(spec) == "/var/azureml-app/azureml-models/m/2"
    assert recipe.args["BASE_IMAGE"] == "runner:1"


def test_serving_and_batch_recipes() -> None:
    assert (
        serving_image_build().args == {"BASE_IMAGE": DEFAULT_BASE_IMAGE} == {"BASE_IMAGE": "python:3.11-slim-bookworm"}
    )
    assert serving_image_build().context == REPO_ROOT
    runner = batch_image_build("runner", "serving:1")
    assert (runner.target, runner.args, runner.dockerfile) == (
        "runner",
        {"BASE_IMAGE": "serving:1"},
        REPO_ROOT / "serving" / "Dockerfile.batch",
    )
    with pytest.raises(ValueError, match="batch image target: got 'api'; expected 'runner' or 'job-api'"):
        batch_image_build("api", "serving:1")  # type: ignore[arg-type]


# --- Dockerfile rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_rules(name: str) -> None:
    text = (REPO_ROOT / name).read_text()
    assert not re.search(r"^\s*HEALTHCHECK", text, re.M | re.I), "Kubernetes probes check health; no HEALTHCHECK"
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M), "every Dockerfile builds FROM a BASE_IMAGE argument"
    # Every image stage (not the build/staging stages) ends as uid 10001 (restricted pod security: runAsNonRoot,
    # uid >= 10000); a stage without USER inherits it from the serving image.
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    finals = [st for st in stages if not re.match(r"\S+ AS (build|stage)\b", st)]
    assert finals, f"{name}: no final stage"
    for stage in finals:
        users = re.findall(r"^USER (\S+)", stage, re.M)
        if users:
            assert users[-1] == "10001:10001", f"{name}: stage {stage.splitlines()[0]!r} ends as {users[-1]}"
    assert re.search(r"^USER 10001:10001$", text, re.M)


@pytest.mark.parametrize("name", ["serving/Dockerfile", "serving/Dockerfile.custom-base"])
def test_serving_images_install_the_tracing_extra(name: str, tmp_path: Path) -> None:
    """The Dockerfile's own requirements step, run here on pyproject.toml: the core dependencies plus the `tracing`
    extra (OTLP export in the cluster), never pulumi."""
    import os
    import subprocess
    import sys
    import tomllib

    text = (REPO_ROOT / name).read_text()
    assert re.search(r"^ARG EXTRAS=tracing$", text, re.M)
    command = re.search(r'^RUN python3 -c "(.+?)" \\$', text, re.M)
    assert command is not None, f"{name}: no requirements step"
    code = command.group(1).replace("/src/pyproject.toml", str(REPO_ROOT / "pyproject.toml"))
    code = code.replace("/tmp/endpoints-src/pyproject.toml", str(REPO_ROOT / "pyproject.toml"))
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]

    def requirements(extras: str) -> list[str]:
        env = {**os.environ, "EXTRAS": extras}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    assert requirements("tracing") == project["dependencies"] + project["optional-dependencies"]["tracing"]
    assert any(r.startswith("opentelemetry-exporter-otlp-proto-http") for r in requirements("tracing"))
    assert requirements("") == project["dependencies"]  # --build-arg EXTRAS= : the core alone
    assert not any(r.startswith("pulumi") for r in requirements("tracing"))


def test_serving_dockerfile_defaults_to_official_slim_image() -> None:
    text = (REPO_ROOT / "serving" / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert text.rstrip().endswith('CMD ["--host", "0.0.0.0", "--port", "5001"]')
    assert 'ENTRYPOINT ["python", "-m", "serving"]' in text


def test_mlflow_no_code_image_gets_the_models_own_requirements(tmp_path: Path) -> None:
    # Azure's no-code deployment: no environment; the image installs what MLflow saved with the model.
    model = tmp_path / "models" / "iris"
    _write(model / "MLmodel", "flavors: {}\n")
    _write(model / "requirements.txt", "mlflow==2.16.0\nscikit-learn==1.5.1\n")
    spec = _online(code_configuration=None, environment=None, model={"path": "../models/iris", "type": "mlflow_model"})
    recipe = deployment_image_build(spec, tmp_path / "deployments" / "blue.yml", "serving:1")
    assert recipe is not None
    assert (recipe.args["CONDA_FILE"], recipe.args["MODEL_PATH"], recipe.args["MODEL_NAME"]) == (
        "models/iris/requirements.txt",
        "models/iris",
        "iris",
    )
    assert "EXTRA_REQUIREMENTS" not in recipe.args  # the model's requirements name mlflow already
    (model / "requirements.txt").unlink()
    _write(model / "conda.yaml", "dependencies:\n  - python=3.11\n  - pip:\n    - scikit-learn==1.5.1\n")
    recipe = deployment_image_build(spec, tmp_path / "deployments" / "blue.yml", "serving:1")
    assert recipe is not None
    assert recipe.args["CONDA_FILE"] == "models/iris/conda.yaml"
    assert recipe.args["EXTRA_REQUIREMENTS"] == "mlflow-skinny>=2.12,<4"


# --- environment.image: the serving layer on the user's image -----------------------------------------------


def test_custom_base_recipe_and_which_image_it_starts_from() -> None:
    build = custom_base_image_build("registry.internal/team/py312:7")
    assert build == ImageBuild(
        context=REPO_ROOT,
        dockerfile=REPO_ROOT / "serving" / "Dockerfile.custom-base",
        args={"BASE_IMAGE": "registry.internal/team/py312:7"},
    )
    assert user_base_image(_online(environment={"image": "python:3.12"})) == "python:3.12"
    routes = {"port": 8000, "path": "/"}
    byoc = _online(
        environment={
            "image": "my/server:1",
            "inference_config": {"liveness_route": routes, "readiness_route": routes, "scoring_route": routes},
        }
    )
    assert user_base_image(byoc) is None  # a custom container runs as is, never built on
    assert user_base_image(_online(environment="azureml:env:1")) is None


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param(
            "docker.io/library/python:3.12",
            ("registry.internal/lib/python:3.12", "docker.io/library/"),
            id="longest-prefix",
        ),
        pytest.param("docker.io/acme/x:1", ("registry.internal/hub/acme/x:1", "docker.io/"), id="shorter-prefix"),
        pytest.param("mcr.microsoft.com/azureml/minimal:1", (None, "mcr.microsoft.com/azureml/"), id="to-serving"),
        pytest.param("quay.io/x/y:2", ("quay.io/x/y:2", None), id="no-match"),
    ],
)
def test_base_image_redirects(image: str, expected: tuple[str | None, str | None]) -> None:
    redirects = {
        "docker.io/": "registry.internal/hub/",
        "docker.io/library/": "registry.internal/lib/",
        "mcr.microsoft.com/azureml/": "serving",
    }
    assert redirect_base_image(image, redirects) == expected


def test_custom_base_dockerfile_installs_nothing_with_a_package_manager() -> None:
    # Air-gapped user images: no apt/yum/apk; python3 >= 3.11 is checked with a message naming the field.
    text = (REPO_ROOT / "serving" / "Dockerfile.custom-base").read_text()
    assert not re.search(r"\b(apt-get|apt|yum|dnf|apk|microdnf)\b\s+(install|add|update)", text)
    assert "environment.image: python3 is $(python3 -V 2>&1); the serving layer needs python3 >= 3.11" in text
    assert "python3 -m venv --system-site-packages /opt/endpoints-venv" in text


def test_inline_conda_file_becomes_extra_requirements(tmp_path: Path) -> None:
    # Azure's environment schema takes conda_file as a string (a file) or an object (the environment inline).
    inline = {"dependencies": ["python=3.11", "scikit-learn=1.5", {"pip": ["joblib>=1.3", "azureml-defaults"]}]}
    dep = _online(environment={"image": "python:3.12", "conda_file": inline})
    build = deployment_image_build(dep, tmp_path / "deployments" / "d.yml", "serving:1", project_root=tmp_path)
    assert build is not None
    assert build.args["CONDA_FILE"] == ""
    assert build.args["EXTRA_REQUIREMENTS"] == "scikit-learn==1.5.* joblib>=1.3"
    bad = _online(environment={"image": "python:3.12", "conda_file": {"dependencies": [{"conda": ["x"]}]}})
    with pytest.raises(SpecError) as e:
        deployment_image_build(bad, tmp_path / "deployments" / "d.yml", "serving:1", project_root=tmp_path)
    assert str(e.value) == (
        f"{tmp_path / 'deployments' / 'd.yml'}: environment.conda_file.dependencies[0]: got {{'conda': ['x']}};"
        " expected a package spec or a `pip:` list"
    )
