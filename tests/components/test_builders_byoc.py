"""Custom containers (BYOC) and Triton on the cluster: the server container beside the auth proxy sidecar."""

from __future__ import annotations

from typing import Any

import pytest
from specs_factory import CATALOG, DIGEST, SETTINGS, custom_deployment, endpoint, instance

from components.builders.common import ClusterSettings
from components.builders.online import (
    build_deployment_objects,
    build_endpoint_objects,
    scoring_uri,
    swagger_uri,
)
from components.k8s_schema import validate_objects
from endpoints.specs import OnlineDeployment

SERVING = "registry.example.com/ml/endpoints-serving@sha256:" + "ef" * 32


def triton(**fields: Any) -> OnlineDeployment:
    doc: dict[str, Any] = {
        "name": "tri",
        "endpoint_name": "cars",
        "type": "kubernetes",
        "model": {"name": "densenet", "version": 3, "path": "../models/triton", "type": "triton_model"},
        "instance_type": "Standard_NC4as_T4_v3",
    }
    doc.update(fields)
    return OnlineDeployment.model_validate(doc, context={"catalog": CATALOG})


def _pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    deploy = next(o for o in objs if o["kind"] == "Deployment")
    return deploy["spec"]["template"]["spec"]


def _by_name(containers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in containers}


def test_custom_container_runs_beside_the_auth_proxy() -> None:
    dep = custom_deployment(environment_variables={"MODEL_NAME": "cars"})
    objs = build_deployment_objects(endpoint(), dep, instance("Standard_NC4as_T4_v3"), SETTINGS, SERVING)
    pod = _pod(objs)
    c = _by_name(pod["containers"])
    assert sorted(c) == ["auth", "server"]
    server, auth = c["server"], c["auth"]
    assert server["image"] == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert server["ports"] == [
        {"name": "scoring", "containerPort": 8000, "protocol": "TCP"},
        {"name": "p8002", "containerPort": 8002, "protocol": "TCP"},
    ]
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "scoring", "scheme": "HTTP"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "p8002", "scheme": "HTTP"}
    assert "args" not in server  # the image's own entrypoint
    assert server["env"] == [{"name": "MODEL_NAME", "value": "cars"}]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"  # the instance type's resources go to the server
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    # The auth proxy: the serving image, the endpoint's keys, the http port the Service targets.
    assert auth["image"] == SERVING
    assert auth["command"] == ["python"]
    assert auth["args"] == [
        "-m",
        "serving.auth_proxy",
        "--host",
        "0.0.0.0",
        "--port",
        "5001",
        "--upstream-port",
        "8000",
        "--readiness-path",
        "/v2/health/ready",
        "--readiness-port",
        "8002",
    ]
    assert auth["ports"] == [{"name": "http", "containerPort": 5001, "protocol": "TCP"}]
    assert {e["name"]: e["value"] for e in auth["env"]}["ENDPOINTS_AUTH_MODE"] == "key"
    assert all(e["name"].startswith("ENDPOINTS_") for e in auth["env"])
    assert {"name": "keys", "mountPath": "/etc/endpoints/keys", "readOnly": True} in auth["volumeMounts"]
    assert "nvidia.com/gpu" not in auth["resources"]["limits"]
    assert auth["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http", "scheme": "HTTP"}
    svc = next(o for o in objs if o["kind"] == "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"  # the gateway reaches only the proxy
    assert "initContainers" not in pod


def test_triton_server_with_its_v2_routes_and_the_model_repository() -> None:
    dep = triton()
    objs = build_deployment_objects(endpoint(), dep, instance("Standard_NC4as_T4_v3"), SETTINGS, DIGEST)
    pod = _pod(objs)
    server = _by_name(pod["containers"])["server"]
    mdir = "/var/azureml-app/azureml-models/densenet/3"
    assert server["image"] == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert server["args"] == [
        "tritonserver",
        f"--model-repository={mdir}/triton",
        "--http-port=8000",
        "--allow-grpc=false",
        "--allow-metrics=false",
    ]
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "scoring", "scheme": "HTTP"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "scoring", "scheme": "HTTP"}
    assert {"name": "model", "mountPath": mdir, "readOnly": True} in server["volumeMounts"]
    # The local model rides in the image given to the builder (serving image + model) and is copied at start.
    (init,) = pod["initContainers"]
    assert (init["name"], init["image"], init["command"][-2:]) == ("copy-model", DIGEST, [mdir, "/mnt/model"])
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]
    ep = endpoint(traffic={"tri": 100})
    assert scoring_uri(ep, [dep], SETTINGS) == "https://cars.test.example.com/v2/models"
    assert swagger_uri(ep, [dep], SETTINGS) == ""


def test_triton_image_from_the_stack_or_the_environment_and_a_fetched_model() -> None:
    settings = ClusterSettings(triton_image="registry.internal/triton@sha256:" + "12" * 32)
    dep = triton(model={"path": "s3://models/triton", "type": "triton_model"})
    pod = _pod(build_deployment_objects(endpoint(), dep, instance("Standard_NC4as_T4_v3"), settings, SERVING))
    assert _by_name(pod["containers"])["server"]["image"] == settings.triton_image
    (init,) = pod["initContainers"]
    assert init["name"] == "fetch-model"
    assert init["command"][:3] == ["python", "-m", "serving.fetch_model"]
    own = triton(environment={"image": "registry.internal/my-triton:24.08"})
    pod = _pod(build_deployment_objects(endpoint(), own, instance("Standard_NC4as_T4_v3"), settings, SERVING))
    assert _by_name(pod["containers"])["server"]["image"] == "registry.internal/my-triton:24.08"


@pytest.mark.parametrize(
    "dep",
    [
        pytest.param(custom_deployment(), id="custom-container"),
        pytest.param(triton(), id="triton-local-model"),
        pytest.param(triton(model={"path": "s3://m/triton", "type": "triton_model"}), id="triton-fetched-model"),
    ],
)
def test_custom_server_objects_validate(dep: OnlineDeployment) -> None:
    ep = endpoint(traffic={dep.name: 100})
    objs = build_endpoint_objects(ep, [dep], SETTINGS) + build_deployment_objects(
        ep, dep, instance("Standard_NC4as_T4_v3"), SETTINGS, SERVING
    )
    assert validate_objects(objs) == []
