"""Custom containers (BYOC) in local mode: the user's image under podman, behind the auth proxy.

A deployment with ``environment.image`` + ``inference_config`` runs as ``python -m serving.auth_proxy`` (the same
production layer as every deployment: keys, tokens, timeouts, request ids), which starts
``podman run --rm --read-only --tmpfs /tmp --user 10001 --cap-drop ALL --network host ... IMAGE`` as its child
and forwards what it admits to the scoring route's port on 127.0.0.1 (host network: the container's ports are
this machine's, so two deployments must not use the same ones). A local model is mounted read-only at
``AZUREML_MODEL_DIR/<its name>``, and ``code_configuration.code`` at ``/var/azureml-app/<its folder name>``
(``AZUREML_ENTRY_SCRIPT=<folder name>/<scoring_script>``), as on Azure and the cluster.

``ENDPOINTS_PODMAN`` names the podman command (default ``podman``; e.g. a wrapper script that adds
``--runtime``). Without podman, the deployment is refused with what to do.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from contract.model_layout import image_model_dir, model_entry_name
from endpoints.images import custom_container_code
from endpoints.specs import OnlineDeployment

PODMAN_ENV = "ENDPOINTS_PODMAN"
# The restricted runtime of the cluster's pods (local custom containers and the image tests run with it).
RESTRICTED = [
    "--read-only",
    "--tmpfs",
    "/tmp:rw,size=256m",
    "--user",
    "10001",
    "--cap-drop",
    "ALL",
    "--network",
    "host",
]


class ContainerEngineMissing(Exception):
    """No podman: the message says what to do."""


def podman_command() -> list[str]:
    """The podman command (``ENDPOINTS_PODMAN``, split like a shell does; default ``podman``).

    Raises:
        ContainerEngineMissing: it is not installed.
    """
    command = shlex.split(os.environ.get(PODMAN_ENV, "podman")) or ["podman"]
    if shutil.which(command[0]) is None:
        raise ContainerEngineMissing(
            f"environment.inference_config: a custom container runs locally with podman, and {command[0]!r} is not"
            f" installed (apt-get install podman, or set {PODMAN_ENV}); or deploy it to a cluster"
        )
    return command


def container_command(
    deployment: OnlineDeployment,
    container_name: str,
    model_dir: Path | None,
    env: dict[str, str],
    code_dir: Path | None = None,
) -> list[str]:
    """``podman run`` of the deployment's image (restricted flags, its environment variables, the model and the
    scoring code mounted read-only where Azure puts them).

    Args:
        deployment: The deployment (a custom container).
        container_name: ``--name`` of the container.
        model_dir: The local model file or folder (``None``: no model).
        env: Environment variables of the container.
        code_dir: The local ``code_configuration.code`` folder (``None``: no code): mounted at
            ``/var/azureml-app/<its name>`` with ``AML_APP_ROOT`` and ``AZUREML_ENTRY_SCRIPT``
            (:func:`endpoints.images.custom_container_code`).
    """
    spec_env = deployment.environment
    assert spec_env is not None and not isinstance(spec_env, str) and spec_env.image
    command = [*podman_command(), "run", "--rm", "--replace", "--name", container_name, *RESTRICTED]
    code = custom_container_code(deployment) if code_dir is not None else None
    for key, value in {**env, **(code[1] if code else {})}.items():
        command += ["-e", f"{key}={value}"]
    if model_dir is not None and deployment.model is not None and not isinstance(deployment.model, str):
        model = deployment.model
        target = f"{image_model_dir(model.name, model.version, deployment.model_mount_path)}"
        command += ["-v", f"{model_dir.resolve()}:{target}/{model_entry_name(model.path)}:ro"]
    if code is not None and code_dir is not None:
        command += ["-v", f"{code_dir.resolve()}:{code[0]}:ro"]
    return [*command, spec_env.image]


def stop_command(container_name: str) -> list[str]:
    """``podman rm -f`` of the container (its PID 1 may ignore SIGTERM, as a bare ``python`` does)."""
    return [*podman_command(), "rm", "-f", "-t", "5", container_name]


def proxy_command(deployment: OnlineDeployment, upstream: list[str], stop: list[str]) -> list[str]:
    """``python -m serving.auth_proxy`` in front of the container (the port is added at start)."""
    env = deployment.environment
    assert env is not None and not isinstance(env, str) and env.inference_config is not None
    routes = env.inference_config
    return [
        sys.executable,
        "-m",
        "serving.auth_proxy",
        "--host",
        "127.0.0.1",
        "--upstream-port",
        str(routes.scoring_route.port),
        "--readiness-path",
        routes.readiness_route.path,
        "--readiness-port",
        str(routes.readiness_route.port),
        "--upstream-command",
        json.dumps(upstream),
        "--upstream-stop-command",
        json.dumps(stop),
    ]
