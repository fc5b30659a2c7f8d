"""The per-deployment image recipe: one function that both the ``OnlineDeployment`` component (pulumi-docker) and
the image tests (podman) call, so the image deployed is the image tested.

The image is ``serving/Dockerfile.deployment`` built on the serving base image (``serving/Dockerfile``): the
deployment's scoring code goes to ``/var/azureml-app``, its conda/pip environment is installed, and a local model
is copied to the deployment's ``AZUREML_MODEL_DIR``. The build context is the endpoint project folder, so every
path the deployment names must lie inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from components.builders.common import k8s_name
from components.builders.online import model_dir
from endpoints.errors import SpecError
from endpoints.loader import is_uri
from endpoints.specs import ModelAsset, OnlineDeployment

DEPLOYMENT_DOCKERFILE = "serving/Dockerfile.deployment"


@dataclass(frozen=True)
class ImageBuild:
    """Everything ``docker build`` needs for one deployment image.

    Attributes:
        context: Build context folder (absolute): the endpoint project folder.
        dockerfile: Dockerfile path (absolute): ``<repo>/serving/Dockerfile.deployment``.
        args: Build arguments (see :func:`image_build_args`).
        repository: Image repository without tag, ``<registry>/<endpoint>-<deployment>``.
    """

    context: str
    dockerfile: str
    args: dict[str, str] = field(default_factory=dict)
    repository: str = ""


def _inside(root: Path, path: Path, where: str) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        raise SpecError(
            f"{where}: got {str(path)!r}; it lies outside the endpoint folder {str(root)!r}, which is the image's"
            " build context"
        ) from None


def image_build_args(
    repo_root: Path,
    project_root: Path,
    deployment_file: Path,
    deployment: OnlineDeployment,
    endpoint_name: str,
    base_image: str,
    registry: str = "",
) -> ImageBuild:
    """The build of one deployment's image.

    Args:
        repo_root: Repository root (holds ``serving/Dockerfile.deployment``).
        project_root: The endpoint project folder (the build context).
        deployment_file: The deployment's YAML file (its relative paths are relative to it).
        deployment: The deployment spec.
        endpoint_name: The endpoint's name (part of the repository name).
        base_image: The serving base image built from ``serving/Dockerfile`` (``BASE_IMAGE`` argument).
        registry: Registry prefix, e.g. ``registry.example.com/ml`` (default empty: a local name).

    Build arguments (empty means "none"): ``BASE_IMAGE``; ``CODE_DIR`` (context-relative scoring code folder);
    ``SCORING_SCRIPT``; ``CONDA_FILE`` (context-relative conda YAML); ``MODEL_PATH`` (context-relative local model
    file or folder; empty when the model is fetched at start from a URI); ``MODEL_DIR`` (where the model lands in
    the image: the deployment's ``AZUREML_MODEL_DIR``).

    Raises:
        SpecError: a path lies outside the project folder, or the environment is a custom container (its image is
            used as is, never built).
    """
    if deployment.is_custom_container:
        raise SpecError(f"deployment {deployment.name}: a custom container's image is used as is; nothing to build")
    base = deployment_file.parent
    where = str(deployment_file)
    args = {
        "BASE_IMAGE": base_image,
        "CODE_DIR": "",
        "SCORING_SCRIPT": "",
        "CONDA_FILE": "",
        "MODEL_PATH": "",
        "MODEL_DIR": model_dir(deployment),
    }
    code = deployment.code_configuration
    if code is not None:
        args["CODE_DIR"] = _inside(project_root, base / code.code, f"{where}: code_configuration.code")
        args["SCORING_SCRIPT"] = code.scoring_script
    env = deployment.environment
    if env is not None and not isinstance(env, str) and env.conda_file and not is_uri(env.conda_file):
        args["CONDA_FILE"] = _inside(project_root, base / env.conda_file, f"{where}: environment.conda_file")
    model = deployment.model
    if isinstance(model, ModelAsset) and not is_uri(model.path):
        args["MODEL_PATH"] = _inside(project_root, base / model.path, f"{where}: model.path")
    name = k8s_name(endpoint_name, deployment.name)
    repository = f"{registry.rstrip('/')}/{name}" if registry else name
    return ImageBuild(
        context=str(project_root.resolve()),
        dockerfile=str((repo_root / DEPLOYMENT_DOCKERFILE).resolve()),
        args=args,
        repository=repository,
    )
