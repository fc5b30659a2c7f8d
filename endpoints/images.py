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

from endpoints.errors import Problem, SpecError
from endpoints.loader import is_uri

# The repository root: serving/Dockerfile* and the root .dockerignore live there.
REPO_ROOT = Path(__file__).resolve().parent.parent
SERVING_DOCKERFILE = "serving/Dockerfile"
BATCH_DOCKERFILE = "serving/Dockerfile.batch"
DEPLOYMENT_DOCKERFILE = "serving/Dockerfile.deployment"
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
    """One image build, as `podman build` / `docker build` / pulumi-docker take it.

    Attributes:
        context: The build context folder (absolute).
        dockerfile: The Dockerfile (absolute; may lie outside the context).
        args: Build arguments (``--build-arg KEY=VALUE``).
        target: The stage to build (``--target``); ``None`` builds the last stage.
        env: Environment variables the built image sets for the server (informational: what
            ``AML_APP_ROOT``, ``AZUREML_ENTRY_SCRIPT`` and ``AZUREML_MODEL_DIR`` will be inside it).
    """

    context: Path
    dockerfile: Path
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    env: dict[str, str] = field(default_factory=dict)

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


def azureml_model_dir(deployment: Any) -> str:
    """``AZUREML_MODEL_DIR`` for a deployment: ``model_mount_path``, else Azure's layout
    ``/var/azureml-app/azureml-models/<model name or "model">/<version or 1>``."""
    mount = getattr(deployment, "model_mount_path", None)
    if mount:
        return str(mount)
    model = deployment.model
    name = getattr(model, "name", None) or "model"
    version = getattr(model, "version", None) or "1"
    return f"{APP_ROOT}/azureml-models/{name}/{version}"


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
    empty when the model is a URI fetched at start) and ``MODEL_DIR`` (``AZUREML_MODEL_DIR``; the model lands
    in it under its own name, as on Azure).

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
    if env is not None and env.conda_file and not is_uri(env.conda_file):
        local["CONDA_FILE"] = ("environment.conda_file", (spec_dir / env.conda_file).resolve())

    if project_root is not None:
        context = Path(project_root).resolve()
    else:
        context = Path(os.path.commonpath([spec_dir, *(p for _, p in local.values())]))
    args = {"BASE_IMAGE": base_image, "CODE_DIR": "", "SCORING_SCRIPT": "", "CONDA_FILE": "", "MODEL_PATH": ""}
    args.update({key: _inside(context, path, file, where) for key, (where, path) in local.items()})
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
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        got = data.get("dependencies") if isinstance(data, dict) else data
        raise SpecError([Problem(str(path), None, "dependencies", f"got {got!r}; expected a list of packages")])
    out: list[str] = []
    for i, dep in enumerate(data.get("dependencies") or []):
        if isinstance(dep, str):
            requirement = _pip_name(dep, str(path), f"dependencies[{i}]")
            if requirement:
                out.append(requirement)
        elif isinstance(dep, dict) and set(dep) == {"pip"} and isinstance(dep["pip"], list):
            for entry in dep["pip"]:
                name = re.split(r"[<>=!~\[; ]", str(entry).strip(), maxsplit=1)[0].lower()
                if name not in _SKIPPED:
                    out.append(str(entry).strip())
        else:
            message = f"got {dep!r}; expected a package spec or a `pip:` list"
            raise SpecError([Problem(str(path), None, f"dependencies[{i}]", message)])
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
