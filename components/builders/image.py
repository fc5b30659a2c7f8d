"""The per-deployment image recipe: one function that both the ``OnlineDeployment`` component (pulumi-docker) and
the image tests (podman) call, so the image deployed is the image tested.

The image is ``serving/Dockerfile.deployment`` built on the serving base image (``serving/Dockerfile``): the
deployment's scoring code goes to ``/var/azureml-app``, its conda/pip environment is installed, and a local model
is copied to the deployment's ``AZUREML_MODEL_DIR``. The build context is the endpoint project folder, so every
path the deployment names must lie inside it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from components.builders.common import k8s_name
from endpoints.errors import SpecError
from endpoints.images import (
    BatchTarget,
    ImageBuild,
    azureml_model_dir,
    batch_image_build,
    custom_base_image_build,
    deployment_image_build,
)
from endpoints.specs import BatchDeployment, OnlineDeployment

DEPLOYMENT_DOCKERFILE = "serving/Dockerfile.deployment"


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

    Build arguments: those of :func:`endpoints.images.deployment_image_build` (the shared recipe): ``BASE_IMAGE``,
    ``CODE_DIR``, ``SCORING_SCRIPT``, ``CONDA_FILE``, ``MODEL_PATH``, ``MODEL_DIR`` (the deployment's
    ``AZUREML_MODEL_DIR``).

    Raises:
        SpecError: a path lies outside the project folder, or the environment is a custom container (its image is
            used as is, never built).
    """
    if deployment.is_custom_container:
        raise SpecError(f"deployment {deployment.name}: a custom container's image is used as is; nothing to build")
    # One recipe for every image build (pulumi-docker here, podman in scripts/images and tests/images).
    recipe = deployment_image_build(
        deployment, deployment_file, base_image, project_root=project_root, model_dir=azureml_model_dir(deployment)
    )
    if recipe is None:
        raise SpecError(f"deployment {deployment.name}: environment.build is a user build context; give a pinned image")
    name = k8s_name(endpoint_name, deployment.name)
    repository = f"{registry.rstrip('/')}/{name}" if registry else name
    return replace(recipe, dockerfile=(repo_root / DEPLOYMENT_DOCKERFILE).resolve(), repository=repository)


def custom_base_build(
    repo_root: Path, image: str, endpoint_name: str, deployment_name: str, registry: str = ""
) -> ImageBuild:
    """The serving layer on a deployment's own ``environment.image`` (``serving/Dockerfile.custom-base``), built
    before the deployment image, which then uses it as ``BASE_IMAGE``.

    Args:
        repo_root: Repository root (the build context).
        image: The user's image, after the stack's ``baseImageRedirects``.
        endpoint_name: The endpoint's name (part of the repository name).
        deployment_name: The deployment's name (part of the repository name).
        registry: Registry prefix (default empty: a local name).
    """
    recipe = custom_base_image_build(image, repo_root)
    name = k8s_name(endpoint_name, deployment_name, "base")
    return replace(
        recipe,
        context=recipe.context.resolve(),
        dockerfile=recipe.dockerfile.resolve(),
        repository=f"{registry.rstrip('/')}/{name}" if registry else name,
    )


# Repository names of the stack-wide batch images (``<registry>/<name>``).
BATCH_IMAGE_REPOSITORIES: dict[str, str] = {"job-api": "endpoints-batch-job-api", "runner": "endpoints-batch-runner"}


def batch_base_image_build(repo_root: Path, target: BatchTarget, serving_image: str, registry: str = "") -> ImageBuild:
    """The batch job API image or the batch runner base image, as :func:`endpoints.images.batch_image_build`
    describes them (``serving/Dockerfile.batch``, one stage per target, built on the serving image).

    Args:
        repo_root: Repository root (the build context).
        target: ``job-api`` (the serving image plus the ``kubernetes`` client) or ``runner``.
        serving_image: The serving image (``BASE_IMAGE``).
        registry: Registry prefix (default empty: a local name).
    """
    recipe = batch_image_build(target, serving_image, repo_root)
    name = BATCH_IMAGE_REPOSITORIES[target]
    return replace(
        recipe,
        context=recipe.context.resolve(),
        dockerfile=recipe.dockerfile.resolve(),
        repository=f"{registry.rstrip('/')}/{name}" if registry else name,
    )


def custom_runner_build(
    repo_root: Path, image: str, endpoint_name: str, deployment_name: str, registry: str = ""
) -> ImageBuild:
    """The batch runner on a batch deployment's own ``environment.image``: the serving layer on the user's image
    (:func:`custom_base_build`), then ``serving/Dockerfile.batch --target runner`` on that; the deployment image
    (:func:`batch_deployment_build`) is then built on the result, as online deployment images are built on the
    serving layer alone.

    Args:
        repo_root: Repository root (the build context).
        image: The user's image, after the stack's ``baseImageRedirects``.
        endpoint_name: The batch endpoint's name (part of the repository names).
        deployment_name: The deployment's name (part of the repository names).
        registry: Registry prefix (default empty: a local name).
    """
    base = custom_base_build(repo_root, image, endpoint_name, deployment_name, registry)
    runner = batch_base_image_build(repo_root, "runner", "<custom-base>", registry)
    name = k8s_name(endpoint_name, deployment_name, "runner")
    return replace(runner, repository=f"{registry.rstrip('/')}/{name}" if registry else name, base=base)


def batch_deployment_build(
    repo_root: Path,
    deployment_file: Path,
    deployment: BatchDeployment,
    endpoint_name: str,
    runner_image: Any,
    registry: str = "",
) -> ImageBuild:
    """The image of one batch deployment: its scoring code, environment and local model on the batch runner image.

    The build context is the closest folder holding the deployment's file and every local path it names (a batch
    endpoint may reuse another endpoint's model or environment, e.g. ``../../car-classifier/models/alice``).

    Args:
        repo_root: Repository root (holds ``serving/Dockerfile.deployment``).
        deployment_file: The deployment's YAML file.
        deployment: The batch deployment spec.
        endpoint_name: The batch endpoint's name (part of the repository name).
        runner_image: The batch runner image (``BASE_IMAGE``; a string, or a Pulumi output when built).
        registry: Registry prefix (default empty: a local name).

    Raises:
        SpecError: the environment is a user build context or a custom container (give a pinned image).
    """
    recipe = deployment_image_build(
        deployment, deployment_file, "<runner-image>", model_dir=azureml_model_dir(deployment)
    )
    if recipe is None:
        raise SpecError(
            f"deployment {deployment.name}: environment is a user image or build context; give a pinned image"
            " (overrides.<endpoint>.deployments.<name>.image)"
        )
    name = k8s_name(endpoint_name, deployment.name)
    return replace(
        recipe,
        dockerfile=(repo_root / DEPLOYMENT_DOCKERFILE).resolve(),
        args={**recipe.args, "BASE_IMAGE": runner_image},
        repository=f"{registry.rstrip('/')}/{name}" if registry else name,
    )
