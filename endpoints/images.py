"""Container image build recipes: the one source of truth for how images are built.

The serving base image (``serving/Dockerfile``), the batch images (``serving/Dockerfile.batch``) and the
per-deployment image (``serving/Dockerfile.deployment``: scoring code, pip/conda environment and a local
model on top of a serving or batch runner image) are described here as :class:`ImageBuild` values
(Dockerfile, context folder, build arguments, target). The components hand them to pulumi-docker,
``scripts/images/build.py`` and the image tests hand them to podman, so every path builds the same thing.

Everything here is pure (it reads no file except :func:`conda_requirements`, which reads the environment
file it is given) and imports neither pulumi nor the serving runtime. Inside the per-deployment build,
``python -m endpoints.images requirements FILE`` turns a conda file into pip requirements.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from contract.model_layout import image_model_dir, model_entry_name
from endpoints.errors import Problem, SpecError
from endpoints.loader import is_uri

# The repository root: serving/Dockerfile* and the root .dockerignore live there.
REPO_ROOT = Path(__file__).resolve().parent.parent
SERVING_DOCKERFILE = "serving/Dockerfile"
BATCH_DOCKERFILE = "serving/Dockerfile.batch"
DEPLOYMENT_DOCKERFILE = "serving/Dockerfile.deployment"
CUSTOM_BASE_DOCKERFILE = "serving/Dockerfile.custom-base"
# A base-image redirect to this value means "build on the stack's serving image instead".
SERVING_IMAGE_TARGET = "serving"
# Default redirects (stack setting ml-endpoints:baseImageRedirects): Azure's curated inference images carry Azure's
# own serving stack (which this project's serving image replaces) on an old conda Python, so a deployment naming
# one is built on the serving image, as before; any other environment.image is built on.
DEFAULT_BASE_IMAGE_REDIRECTS: dict[str, str] = {"mcr.microsoft.com/azureml/": SERVING_IMAGE_TARGET}
# Official slim image (what the Dockerfiles default to); machines that cannot pull use
# scripts/images/build-base-image.sh's LOCAL_BASE_IMAGE instead.
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
LOCAL_BASE_IMAGE = "localhost/debian-python:bookworm"
# Where the per-deployment image puts the scoring code (AML_APP_ROOT), as Azure does.
APP_ROOT = "/var/azureml-app"
SERVING_PORT = 5001
# uid/gid the images run as (restricted pod security wants >= 10000).
RUN_AS_USER = 10001

BatchTarget = Literal["runner", "job-api"]

# Conda packages that are not Python distributions (the interpreter, the installers, native toolkits the
# wheels bundle) and Azure's own serving stack, which this project's server replaces.
_SKIPPED = frozenset(
    {
        "python",
        "pip",
        "setuptools",
        "wheel",
        "conda",
        "mamba",
        "cudatoolkit",
        "cuda-toolkit",
        "cudnn",
        "mkl",
        "nomkl",
        "libgcc-ng",
        "libstdcxx-ng",
        "openssl",
        "ca-certificates",
        "azureml-defaults",
        "azureml-inference-server-http",
    }
)
# Conda package names whose PyPI distribution is named differently.
_CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cpu": "torch", "py-xgboost": "xgboost", "py-lightgbm": "lightgbm"}
_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)$")


@dataclass(frozen=True)
class ImageBuild:
    """One image build, as `podman build` / `docker build` / pulumi-docker take it (the one recipe type: local
    builds, the image tests and the stack's components all use it).

    Attributes:
        context: The build context folder (absolute).
        dockerfile: The Dockerfile (absolute; may lie outside the context).
        args: Build arguments (``--build-arg KEY=VALUE``; a component may hold a Pulumi output in one).
        target: The stage to build (``--target``); ``None`` builds the last stage.
        env: Environment variables the built image sets for the server (informational: what
            ``AML_APP_ROOT``, ``AZUREML_ENTRY_SCRIPT`` and ``AZUREML_MODEL_DIR`` will be inside it).
        repository: Image repository without tag (``<registry>/<name>``) where a stack pushes it; "" locally.
        base: An image to build first, whose reference becomes this build's ``BASE_IMAGE`` (the serving layer on
            a user's ``environment.image``); ``None`` when ``BASE_IMAGE`` is given.
    """

    context: Path
    dockerfile: Path
    args: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    repository: str = ""
    base: ImageBuild | None = None

    def podman_args(self) -> list[str]:
        """The arguments after ``podman build`` (or ``docker build``), ending with the context."""
        out = ["-f", str(self.dockerfile)]
        for key, value in sorted(self.args.items()):
            out += ["--build-arg", f"{key}={value}"]
        if self.target:
            out += ["--target", self.target]
        return [*out, str(self.context)]


def serving_image_build(base_image: str = DEFAULT_BASE_IMAGE, repo_root: Path = REPO_ROOT) -> ImageBuild:
    """The serving base image: the core distribution (no pulumi) running ``python -m serving``.

    Args:
        base_image: Image with python3 >= 3.11 and venv (default the official ``python:3.11-slim-bookworm``).
        repo_root: The repository holding ``serving/Dockerfile`` (default this checkout).
    """
    return ImageBuild(context=repo_root, dockerfile=repo_root / SERVING_DOCKERFILE, args={"BASE_IMAGE": base_image})


def batch_image_build(target: BatchTarget, serving_image: str, repo_root: Path = REPO_ROOT) -> ImageBuild:
    """The batch runner image (``python -m serving.batch.runner``) or the batch job API image.

    Both are layered on the serving image (they share its venv layers; the runner adds nothing, the job API
    adds the ``kubernetes`` client).

    Args:
        target: ``runner`` or ``job-api``.
        serving_image: The serving image built from :func:`serving_image_build` (their ``BASE_IMAGE``).
        repo_root: The repository holding ``serving/Dockerfile.batch`` (default this checkout).
    """
    if target not in ("runner", "job-api"):
        raise ValueError(f"batch image target: got {target!r}; expected 'runner' or 'job-api'")
    return ImageBuild(
        context=repo_root, dockerfile=repo_root / BATCH_DOCKERFILE, args={"BASE_IMAGE": serving_image}, target=target
    )


def custom_base_image_build(image: str, repo_root: Path = REPO_ROOT) -> ImageBuild:
    """The serving layer on a user's own image (``environment.image``): ``serving/Dockerfile.custom-base``.

    The user's image must have ``python3`` >= 3.11 with the venv module on PATH; the serving package goes into
    ``/opt/endpoints-venv`` (with the image's own site-packages visible). The per-deployment image
    (:func:`deployment_image_build`) is then built on the result.

    Args:
        image: The user's image (after :func:`redirect_base_image`).
        repo_root: The repository holding ``serving/Dockerfile.custom-base`` (default this checkout).
    """
    return ImageBuild(context=repo_root, dockerfile=repo_root / CUSTOM_BASE_DOCKERFILE, args={"BASE_IMAGE": image})


def redirect_base_image(image: str, redirects: dict[str, str]) -> tuple[str | None, str | None]:
    """Where a deployment's ``environment.image`` is pulled from, after the stack's redirects.

    ``redirects`` maps image-reference prefixes to replacements (the longest matching prefix wins):
    ``{"docker.io/": "registry.internal/dockerhub/"}`` pulls ``docker.io/library/python:3.12`` as
    ``registry.internal/dockerhub/library/python:3.12`` (air-gapped registries); a replacement equal to
    :data:`SERVING_IMAGE_TARGET` (``serving``) builds the deployment on the stack's serving image instead.

    Returns:
        (the image to build on, or ``None`` for the serving image; the prefix that matched, or ``None``).
    """
    matches = [prefix for prefix in redirects if prefix and image.startswith(prefix)]
    if not matches:
        return image, None
    prefix = max(matches, key=len)
    target = redirects[prefix]
    if target == SERVING_IMAGE_TARGET:
        return None, prefix
    return target + image[len(prefix) :], prefix


def user_base_image(deployment: Any) -> str | None:
    """The user's image a deployment image is built on (``environment.image`` of an inline environment that is
    not a custom container); ``None`` when the deployment names none."""
    env = getattr(deployment, "environment", None)
    if env is None or isinstance(env, str) or env.inference_config is not None:
        return None
    image: str | None = env.image
    return image


def custom_container_code(deployment: Any) -> tuple[str, dict[str, str]] | None:
    """Where a custom container (``inference_config``) finds its ``code_configuration``, as Azure puts it: the code
    folder at ``/var/azureml-app/<folder name>`` (read-only), ``AML_APP_ROOT=/var/azureml-app`` and
    ``AZUREML_ENTRY_SCRIPT=<folder name>/<scoring_script>`` (the inference server Azure's images run reads
    both). Local mode mounts the folder there; the cluster copies it there from the auth sidecar's image.

    Returns:
        (the folder's path in the container, the environment variables it gets), or ``None``: no code.
    """
    code = getattr(deployment, "code_configuration", None)
    if code is None:
        return None
    source = getattr(deployment, "source_path", None)
    folder = Path(source).parent / code.code if source else Path(code.code)
    name = folder.resolve().name if source else PurePosixPath(code.code).name
    name = name or "code"
    env = {"AML_APP_ROOT": APP_ROOT, "AZUREML_ENTRY_SCRIPT": f"{name}/{code.scoring_script}"}
    return f"{APP_ROOT}/{name}", env


def azureml_model_dir(deployment: Any) -> str:
    """``AZUREML_MODEL_DIR`` for a deployment: ``model_mount_path``, else Azure's layout
    ``/var/azureml-app/azureml-models/<model name or "model">/<version or 1>``."""
    model = deployment.model
    mount = getattr(deployment, "model_mount_path", None)
    return image_model_dir(getattr(model, "name", None), getattr(model, "version", None), mount)


def _inside(context: Path, path: Path, file: str, where: str) -> str:
    try:
        return path.relative_to(context).as_posix() or "."
    except ValueError:
        message = f"got {str(path)!r}; it lies outside {str(context)!r}, the image's build context"
        raise SpecError([Problem(file, None, where, message)]) from None


def deployment_image_build(
    deployment: Any,
    deployment_file: str | Path,
    base_image: str,
    project_root: str | Path | None = None,
    model_dir: str | None = None,
    dockerfile: Path | None = None,
) -> ImageBuild | None:
    """The per-deployment image: scoring code, environment and a local model on top of ``base_image``.

    This is the one recipe of a deployment's image: the ``OnlineDeployment`` component hands it to
    pulumi-docker, ``scripts/images/build.py`` and ``tests/images`` to podman.

    Build arguments of ``serving/Dockerfile.deployment`` (an empty value means "none"; paths are relative to
    the context): ``BASE_IMAGE`` (the serving image, or the batch runner image for batch deployments),
    ``CODE_DIR`` (copied to ``/var/azureml-app``), ``SCORING_SCRIPT`` (``AZUREML_ENTRY_SCRIPT``), ``CONDA_FILE``
    (conda YAML or pip ``.txt``, installed into the image's venv), ``MODEL_PATH`` (a local model file or folder;
    empty when the model is a URI fetched at start), ``EXTRA_REQUIREMENTS`` (pip requirements added to the conda
    file's: mlflow for an MLflow model with no scoring code whose own requirements lack it), ``MODEL_NAME`` (its
    name inside ``AZUREML_MODEL_DIR``: :func:`contract.model_layout.model_entry_name`) and ``MODEL_DIR``
    (``AZUREML_MODEL_DIR``).

    Args:
        deployment: An ``OnlineDeployment`` or ``BatchDeployment`` (references already resolved).
        deployment_file: The deployment's YAML file; its relative paths start in its folder.
        base_image: The image to build on.
        project_root: The build context (default: the closest folder holding the deployment file's folder and
            every local path the deployment names). Paths outside it are an error.
        model_dir: ``AZUREML_MODEL_DIR`` inside the image (default :func:`azureml_model_dir`).
        dockerfile: Override of ``serving/Dockerfile.deployment`` (default this checkout's).

    Returns:
        The build, or ``None`` when the deployment runs a user image as is (a custom container with
        ``inference_config``, or an environment given by ``build``: see :func:`environment_build`).

    Raises:
        SpecError: an unresolved ``azureml:`` reference, remote scoring code, or a path outside ``project_root``.
    """
    deployment_file = Path(deployment_file).resolve()
    spec_dir = deployment_file.parent
    file = str(deployment_file)
    env = deployment.environment
    if isinstance(env, str):
        message = f"got {env!r}; resolve the reference (registry.yml) before building"
        raise SpecError([Problem(file, None, "environment", message)])
    if isinstance(deployment.model, str):
        message = f"got {deployment.model!r}; resolve the reference (registry.yml) before building"
        raise SpecError([Problem(file, None, "model", message)])
    if env is not None and (env.inference_config is not None or env.build is not None):
        return None

    local: dict[str, tuple[str, Path]] = {}
    code = deployment.code_configuration
    if code is not None:
        if is_uri(code.code):
            message = f"got {code.code!r}; scoring code must be a local folder"
            raise SpecError([Problem(file, None, "code_configuration.code", message)])
        local["CODE_DIR"] = ("code_configuration.code", (spec_dir / code.code).resolve())
    model = deployment.model
    if model is not None and not is_uri(model.path):
        local["MODEL_PATH"] = ("model.path", (spec_dir / model.path).resolve())
    extra: list[str] = []
    if env is not None and isinstance(env.conda_file, dict):
        # Azure takes the conda environment inline too: its packages become pip requirements here.
        for requirement in conda_requirements_of(env.conda_file, file, "environment.conda_file"):
            if re.search(r"\s", requirement):
                message = f"got {requirement!r}; an inline conda_file entry has no spaces here (write it in a file)"
                raise SpecError([Problem(file, None, "environment.conda_file", message)])
            extra.append(requirement)
    elif env is not None and env.conda_file and not is_uri(env.conda_file):
        local["CONDA_FILE"] = ("environment.conda_file", (spec_dir / env.conda_file).resolve())
    inline_conda = env is not None and isinstance(env.conda_file, dict)
    if (
        code is None
        and model is not None
        and model.type == "mlflow_model"
        and "CONDA_FILE" not in local
        and (not inline_conda)
    ):
        # An MLflow model with no scoring code: its own requirements (as Azure installs them) and mlflow.
        own = mlflow_requirements_file(local["MODEL_PATH"][1]) if "MODEL_PATH" in local else None
        if own is not None:
            local["CONDA_FILE"] = ("model.path", own)
        if own is None or not any(_names_mlflow(line) for line in conda_requirements(own)):
            extra.append(MLFLOW_REQUIREMENT)

    if project_root is not None:
        context = Path(project_root).resolve()
    else:
        context = Path(os.path.commonpath([spec_dir, *(p for _, p in local.values())]))
    args = {"BASE_IMAGE": base_image, "CODE_DIR": "", "SCORING_SCRIPT": "", "CONDA_FILE": "", "MODEL_PATH": ""}
    args.update({key: _inside(context, path, file, where) for key, (where, path) in local.items()})
    if "MODEL_PATH" in local:
        args["MODEL_NAME"] = model_entry_name(model.path)
    if extra:
        args["EXTRA_REQUIREMENTS"] = " ".join(extra)
    args["MODEL_DIR"] = model_dir or azureml_model_dir(deployment)
    image_env = {"AML_APP_ROOT": APP_ROOT, "AZUREML_MODEL_DIR": args["MODEL_DIR"]}
    if code is not None:
        args["SCORING_SCRIPT"] = PurePosixPath(Path(code.scoring_script)).as_posix()
        image_env["AZUREML_ENTRY_SCRIPT"] = args["SCORING_SCRIPT"]
    return ImageBuild(
        context=context,
        dockerfile=dockerfile or REPO_ROOT / DEPLOYMENT_DOCKERFILE,
        args=args,
        env=image_env,
    )


MLFLOW_REQUIREMENT = "mlflow-skinny>=2.12,<4"


def _names_mlflow(requirement: str) -> bool:
    name = re.split(r"[<>=!~\[; @]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
    return name in ("mlflow", "mlflow-skinny")


def mlflow_requirements_file(model_path: Path) -> Path | None:
    """The pip requirements MLflow saved with a model (``requirements.txt`` beside ``MLmodel``, else its
    ``conda.yaml``), looking where the server looks for ``MLmodel``; ``None`` when there is none."""
    from contract.model_layout import find_mlflow_model

    folder = find_mlflow_model(str(model_path)) if model_path.is_dir() else None
    if folder is None:
        return None
    for name in ("requirements.txt", "conda.yaml"):
        if (Path(folder) / name).is_file():
            return (Path(folder) / name).resolve()
    return None


def environment_build(deployment: Any, deployment_file: str | Path, base_image: str) -> ImageBuild | None:
    """A user's own environment build (``environment.build``), handed ``BASE_IMAGE``.

    Azure builds such a context on one of its inference images; here the user's Dockerfile can start with
    ``ARG BASE_IMAGE`` / ``FROM ${BASE_IMAGE}`` to get this project's serving image.

    Returns:
        The build, or ``None`` when the environment has no ``build`` section.
    """
    env = deployment.environment
    if env is None or isinstance(env, str) or env.build is None:
        return None
    context = (Path(deployment_file).resolve().parent / env.build.path).resolve()
    return ImageBuild(context=context, dockerfile=context / env.build.dockerfile_path, args={"BASE_IMAGE": base_image})


def _pip_name(conda_spec: str, file: str, where: str) -> str | None:
    spec = conda_spec.strip()
    if "::" in spec:  # channel::package
        spec = spec.split("::", 1)[1]
    m = _CONDA_SPEC.match(spec)
    if not m:
        raise SpecError([Problem(file, None, where, f"got {conda_spec!r}; not a conda package spec")])
    name, rest = m.group("name"), m.group("rest").strip()
    if name.lower() in _SKIPPED or name.startswith("_"):
        return None
    name = _CONDA_TO_PYPI.get(name.lower(), name)
    if not rest:
        return name
    if rest[0] in "<>!~":
        return f"{name}{rest.replace(' ', '')}"
    if rest.startswith("=="):
        return f"{name}=={rest[2:].split('=')[0].strip()}"
    if rest.startswith("="):
        # conda's `name=1.2` means any 1.2.x; `name=1.2=build` pins a build string, which pip has not.
        version = rest[1:].split("=")[0].strip()
        return f"{name}=={version}" if version.endswith("*") else f"{name}=={version}.*"
    # Match-spec form `name 1.2.3` (exact), possibly followed by a build string.
    return f"{name}=={rest.split()[0]}"


def conda_requirements(path: str | Path) -> list[str]:
    """Pip requirement lines for an Azure ML environment file.

    A ``*.txt`` file is read as a pip requirements file. A conda file (YAML with ``dependencies``) gives its
    ``pip:`` entries as they are, plus its conda packages translated to PyPI names and versions
    (``scikit-learn=1.4`` -> ``scikit-learn==1.4.*``); the interpreter, the installers, native toolkits and
    Azure's serving packages (``azureml-defaults``, ``azureml-inference-server-http``) are left out because
    the serving image provides them.

    Raises:
        SpecError: naming the file and the entry when the file is not a conda environment.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError([Problem(str(path), None, "", f"not valid YAML: {e}")]) from e
    return conda_requirements_of(data, str(path), "")


def conda_requirements_of(data: Any, file: str, where: str) -> list[str]:
    """Pip requirement lines of a conda environment already read (a file's content, or ``conda_file`` given inline
    in the spec); see :func:`conda_requirements`.

    Args:
        data: The conda environment (a mapping with ``dependencies``).
        file: The file to name in errors.
        where: The field path of ``data`` in that file (``""`` for a conda file itself).

    Raises:
        SpecError: naming the file and the entry when ``data`` is not a conda environment.
    """
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        got = data.get("dependencies") if isinstance(data, dict) else data
        raise SpecError([Problem(file, None, f"{prefix}dependencies", f"got {got!r}; expected a list of packages")])
    out: list[str] = []
    for i, dep in enumerate(data.get("dependencies") or []):
        if isinstance(dep, str):
            requirement = _pip_name(dep, file, f"{prefix}dependencies[{i}]")
            if requirement:
                out.append(requirement)
        elif isinstance(dep, dict) and set(dep) == {"pip"} and isinstance(dep["pip"], list):
            for entry in dep["pip"]:
                name = re.split(r"[<>=!~\[; ]", str(entry).strip(), maxsplit=1)[0].lower()
                if name not in _SKIPPED:
                    out.append(str(entry).strip())
        else:
            message = f"got {dep!r}; expected a package spec or a `pip:` list"
            raise SpecError([Problem(file, None, f"{prefix}dependencies[{i}]", message)])
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m endpoints.images requirements [FILE]``: print pip requirements (nothing without FILE)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "requirements" or len(args) > 2:
        print("usage: python -m endpoints.images requirements [ENV_FILE]", file=sys.stderr)
        return 2
    if len(args) == 2:
        try:
            lines = conda_requirements(args[1])
        except (SpecError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
