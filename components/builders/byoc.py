"""Custom containers (bring your own container) and Triton Inference Server deployments on the cluster (pure).

Such a deployment's pod runs two containers:

- ``server``: the user's image (``environment.image`` with ``inference_config``), or Triton (``model.type:
  triton_model``: the stack's ``tritonImage`` or ``environment.image``, started as ``tritonserver
  --model-repository=...``), with the liveness/readiness probes of its routes (Triton: ``/v2/health/live`` and
  ``/v2/health/ready`` on 8000) and the instance type's resources (GPUs included).
- ``auth``: the serving image running :mod:`serving.auth_proxy`, the same production layer as every other
  deployment (key / ``aml_token`` / ``aad_token`` auth, timeouts, body limits, request ids, ``/metrics``). The
  Service (and so the endpoint's HTTPRoute and the ingress NetworkPolicy) targets its ``http`` port; it forwards
  what it admits to the scoring route's port on 127.0.0.1. Azure authenticates BYOC traffic at the endpoint too,
  so the endpoint keeps its keys whatever the container runs; the container's own ports are never exposed.

The model, when there is one, is put at ``AZUREML_MODEL_DIR`` (``model_mount_path`` or Azure's layout) in the
``server`` container through an ``emptyDir``: fetched at start from a URI (``fetch-model`` init container, as for
every deployment), or copied from the image given to the builder (the serving image plus the model, built with
``serving/Dockerfile.deployment``: init container ``copy-model``). A ``code_configuration`` travels in that image
too and is copied (init container ``copy-code``) to where Azure mounts it: ``/var/azureml-app/<folder name>``, with
``AML_APP_ROOT`` and ``AZUREML_ENTRY_SCRIPT`` set (:func:`endpoints.images.custom_container_code`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from components.builders.common import (
    EPHEMERAL_STORAGE_WORKLOAD,
    SERVING_PORT,
    http_probe,
    remote_model_uri,
    with_ephemeral_storage,
)
from contract.model_layout import model_entry_name
from contract.serving import ENV_VARS
from endpoints.images import APP_ROOT, custom_container_code
from endpoints.images import azureml_model_dir as model_dir
from endpoints.specs import OnlineDeployment

TRITON_HTTP_PORT = 8000
COPY_MODEL_SCRIPT = "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)"
# The scoring code: /var/azureml-app of the sidecar's image, less the model folder kept there (argv[3]).
COPY_CODE_SCRIPT = (
    "import shutil, sys; src, dst, skip = sys.argv[1:4]; shutil.copytree(src, dst, dirs_exist_ok=True,"
    " ignore=lambda d, names: [n for n in names if d == src and n == skip])"
)
# Resources of the copy init containers and of the auth sidecar (the user's container gets the instance type's).
COPY_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
AUTH_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


@dataclass(frozen=True)
class Route:
    """A port and path of the custom container."""

    port: int
    path: str


@dataclass(frozen=True)
class CustomServer:
    """What runs in the ``server`` container of a custom-container or Triton deployment.

    Attributes:
        image: Its image.
        liveness: Liveness route (probed by Kubernetes on the container).
        readiness: Readiness route (probed by Kubernetes, and polled by the auth proxy).
        scoring: Scoring route: the auth proxy forwards to its port.
        args: The container's arguments (``None``: the image's own command).
        kind: ``custom`` or ``triton``.
    """

    image: str
    liveness: Route
    readiness: Route
    scoring: Route
    args: list[str] | None
    kind: str


def is_custom_server(deployment: OnlineDeployment) -> bool:
    """Whether the deployment runs a custom container or Triton instead of the serving process."""
    return deployment.is_custom_container or deployment.is_triton


def triton_model_repository(deployment: OnlineDeployment) -> str:
    """Triton's ``--model-repository``: the model folder under ``AZUREML_MODEL_DIR`` (Azure's layout)."""
    model = deployment.model
    assert model is not None and not isinstance(model, str)
    return f"{model_dir(deployment)}/{model_entry_name(model.path)}"


def custom_server(deployment: OnlineDeployment, triton_image: str) -> CustomServer | None:
    """The ``server`` container of a custom-container or Triton deployment; ``None`` for the serving process.

    Args:
        deployment: The deployment spec.
        triton_image: The stack's Triton image (``tritonImage``), used when a Triton deployment names no image.
    """
    env = deployment.environment
    inline = env if env is not None and not isinstance(env, str) else None
    if deployment.is_triton:
        live = Route(TRITON_HTTP_PORT, "/v2/health/live")
        ready = Route(TRITON_HTTP_PORT, "/v2/health/ready")
        args = [
            "tritonserver",
            f"--model-repository={triton_model_repository(deployment)}",
            f"--http-port={TRITON_HTTP_PORT}",
            "--allow-grpc=false",
            "--allow-metrics=false",
        ]
        image = inline.image if inline is not None and inline.image else triton_image
        return CustomServer(image, live, ready, Route(TRITON_HTTP_PORT, "/v2/models"), args, "triton")
    if inline is not None and inline.inference_config is not None and inline.image:
        ic = inline.inference_config
        return CustomServer(
            inline.image,
            Route(ic.liveness_route.port, ic.liveness_route.path),
            Route(ic.readiness_route.port, ic.readiness_route.path),
            Route(ic.scoring_route.port, ic.scoring_route.path),
            None,
            "custom",
        )
    return None


def auth_proxy_args(server: CustomServer) -> list[str]:
    """Arguments of the ``auth`` sidecar (``python -m serving.auth_proxy``)."""
    return [
        "-m",
        "serving.auth_proxy",
        "--host",
        "0.0.0.0",
        "--port",
        str(SERVING_PORT),
        "--upstream-port",
        str(server.scoring.port),
        "--readiness-path",
        server.readiness.path,
        "--readiness-port",
        str(server.readiness.port),
    ]


def custom_server_deployment(
    deployment: OnlineDeployment, serving_deployment: dict[str, Any], server: CustomServer
) -> dict[str, Any]:
    """Turn the Deployment the online builder made for the serving process into the custom-server pod.

    The serving container becomes the ``auth`` sidecar (same image, keys, ``ENDPOINTS_*`` settings, ``/`` and
    ``/ready`` probes, ``http`` port; small resources) and the ``server`` container is added with the
    instance type's resources, the routes' probes and the model volume.

    Args:
        deployment: The deployment spec.
        serving_deployment: What :func:`components.builders.online.build_deployment` returned for it.
        server: :func:`custom_server` of it.
    """
    obj = copy.deepcopy(serving_deployment)
    pod = obj["spec"]["template"]["spec"]
    serving = pod["containers"][0]
    mdir = model_dir(deployment)
    model_mounts = [m for m in serving["volumeMounts"] if m["name"] == "model"]
    auth = {
        **serving,
        "name": "auth",
        "command": ["python"],
        "args": auth_proxy_args(server),
        "env": [e for e in serving["env"] if e["name"] in ENV_VARS],
        "resources": with_ephemeral_storage(copy.deepcopy(AUTH_RESOURCES), EPHEMERAL_STORAGE_WORKLOAD),
        "volumeMounts": [m for m in serving["volumeMounts"] if m["name"] != "model"],
    }
    ports = {server.scoring.port: "scoring"}
    for route in (server.liveness, server.readiness):
        ports.setdefault(route.port, f"p{route.port}")
    env = [{"name": k, "value": v} for k, v in deployment.environment_variables.items()]
    if deployment.model is not None:
        env.append({"name": "AZUREML_MODEL_DIR", "value": mdir})
    pod["volumes"].append({"name": "server-tmp", "emptyDir": {"sizeLimit": "1Gi"}})
    container: dict[str, Any] = {
        "name": "server",
        "image": server.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for p, n in ports.items()],
        "env": env,
        "resources": serving["resources"],
        "livenessProbe": http_probe(
            deployment.liveness_probe, server.liveness.path, ports[server.liveness.port], liveness=True
        ),
        "readinessProbe": http_probe(
            deployment.readiness_probe, server.readiness.path, ports[server.readiness.port], liveness=False
        ),
        "lifecycle": serving["lifecycle"],
        "volumeMounts": [{"name": "server-tmp", "mountPath": "/tmp"}, *model_mounts],
        "securityContext": serving["securityContext"],
    }
    if server.args is not None:
        container["args"] = server.args
    if deployment.model is not None and remote_model_uri(deployment) is None:
        # A local model rides in the image given to the builder (serving image + model): copied into the volume.
        pod["volumes"].append({"name": "model", "emptyDir": {}})
        container["volumeMounts"].append({"name": "model", "mountPath": mdir, "readOnly": True})
        copy_model = {
            "name": "copy-model",
            "image": serving["image"],
            "command": ["python", "-c", COPY_MODEL_SCRIPT, mdir, "/mnt/model"],
            "volumeMounts": [{"name": "model", "mountPath": "/mnt/model"}],
            "resources": with_ephemeral_storage(copy.deepcopy(COPY_RESOURCES), EPHEMERAL_STORAGE_WORKLOAD),
            "securityContext": serving["securityContext"],
        }
        pod.setdefault("initContainers", []).append(copy_model)
    code = custom_container_code(deployment)
    if code is not None:
        # code_configuration rides in the sidecar's image too (in /var/azureml-app): copied where Azure mounts it.
        code_path, code_env = code
        container["env"] += [{"name": k, "value": v} for k, v in code_env.items()]
        pod["volumes"].append({"name": "code", "emptyDir": {}})
        container["volumeMounts"].append({"name": "code", "mountPath": code_path, "readOnly": True})
        under_app = mdir.removeprefix(APP_ROOT + "/") if mdir.startswith(APP_ROOT + "/") else ""
        copy_code = {
            "name": "copy-code",
            "image": serving["image"],
            "command": ["python", "-c", COPY_CODE_SCRIPT, APP_ROOT, "/mnt/code", under_app.split("/")[0]],
            "volumeMounts": [{"name": "code", "mountPath": "/mnt/code"}],
            "resources": with_ephemeral_storage(copy.deepcopy(COPY_RESOURCES), EPHEMERAL_STORAGE_WORKLOAD),
            "securityContext": serving["securityContext"],
        }
        pod.setdefault("initContainers", []).append(copy_code)
    pod["containers"] = [container, auth]
    return obj
