"""The offline plan of an endpoint with a Triton deployment and a custom container (BYOC): schema-valid,
policy-clean in prod, and the notes the plan prints for base images."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import yaml
from typer.testing import CliRunner

from endpoints.cli.main import build_app

REPO = Path(__file__).resolve().parents[2]
PIN = "@sha256:" + "3" * 64


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def _project(root: Path, stack: str) -> Path:
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    ep = root / "endpoints" / "vision"
    _write(ep / "endpoint.yml", "name: vision\nauth_mode: key\ntraffic: {tri: 80, own: 20}\n")
    _write(
        ep / "deployments" / "tri.yml",
        """
        name: tri
        endpoint_name: vision
        type: kubernetes
        instance_type: Standard_NC4as_T4_v3
        instance_count: 3
        model: {name: densenet, version: 1, path: ../models/triton, type: triton_model}
        """,
    )
    _write(ep / "models" / "triton" / "densenet_onnx" / "config.pbtxt", 'name: "densenet_onnx"\n')
    _write(
        ep / "deployments" / "own.yml",
        f"""
        name: own
        endpoint_name: vision
        instance_type: Standard_DS3_v2
        instance_count: 3
        environment:
          image: registry.example.com/team/server{PIN}
          inference_config:
            liveness_route: {{port: 8080, path: /alive}}
            readiness_route: {{port: 8080, path: /healthy}}
            scoring_route: {{port: 8080, path: /predict}}
        """,
    )
    _write(root / "stacks" / f"Pulumi.{stack}.yaml", stack_text())
    return root


def stack_text() -> str:
    return textwrap.dedent(
        f"""
        config:
          ml-endpoints:namespace: ml-prod
          ml-endpoints:domain: ml.example.com
          ml-endpoints:publicNetworkAccess: disabled
          ml-endpoints:endpoints: [endpoints/vision]
          ml-endpoints:servingImage: registry.example.com/ml/endpoints-serving{PIN}
          ml-endpoints:tritonImage: registry.example.com/mirror/tritonserver{PIN}
          ml-endpoints:overrides:
            vision:
              deployments:
                tri: {{image: registry.example.com/ml/vision-tri{PIN}}}
        """
    ).lstrip()


def test_triton_and_byoc_plan_is_schema_valid_and_policy_clean(tmp_path: Path) -> None:
    root = _project(tmp_path, "prod")
    out = tmp_path / "manifests"
    result = CliRunner().invoke(
        build_app(), ["plan", "--stack", "prod", "--project", str(root), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["schemaProblems"], report["violations"], report["blocked"]) == ([], [], False)
    assert report["scoringUris"] == {"vision": "https://vision.ml.example.com/v2/models"}
    docs = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.yaml"))]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"}
    tri = {c["name"]: c for c in pods["vision-tri"]["containers"]}
    assert tri["server"]["image"] == f"registry.example.com/mirror/tritonserver{PIN}"
    assert tri["auth"]["image"] == f"registry.example.com/ml/vision-tri{PIN}"  # serving image + the model
    assert pods["vision-tri"]["initContainers"][0]["name"] == "copy-model"
    own = {c["name"]: c for c in pods["vision-own"]["containers"]}
    assert own["server"]["image"] == f"registry.example.com/team/server{PIN}"
    assert own["auth"]["image"] == f"registry.example.com/ml/endpoints-serving{PIN}"
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]}
    assert weights == {"vision-own": 20, "vision-tri": 80}


def test_custom_servers_need_the_serving_image_for_their_auth_proxy(tmp_path: Path) -> None:
    root = _project(tmp_path, "prod")
    stack = root / "stacks" / "Pulumi.prod.yaml"
    stack.write_text(
        "\n".join(line for line in stack.read_text().splitlines() if "servingImage" not in line) + "\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(build_app(), ["plan", "--stack", "prod", "--project", str(root)])
    assert result.exit_code == 1
    assert (
        "ml-endpoints:servingImage: missing; deployment vision/own runs a custom container behind the serving"
        " image's auth proxy"
    ) in " ".join(result.output.split())


def _with_code(root: Path) -> Path:
    """``own`` with a ``code_configuration`` (Azure mounts it into a custom container)."""
    own = root / "endpoints" / "vision" / "deployments" / "own.yml"
    own.write_text(
        own.read_text(encoding="utf-8") + "code_configuration: {code: ../serve-code, scoring_script: serve.py}\n",
        encoding="utf-8",
    )
    _write(root / "endpoints" / "vision" / "serve-code" / "serve.py", "print('hello')\n")
    return own


def test_byoc_code_configuration_is_copied_where_azure_mounts_it(tmp_path: Path) -> None:
    root = _project(tmp_path, "prod")
    own_file = _with_code(root)
    # The code travels in the auth sidecar's image: a stack that builds nothing must pin it.
    result = CliRunner().invoke(build_app(), ["plan", "--stack", "prod", "--project", str(root)])
    assert result.exit_code == 1
    assert (
        "ml-endpoints:overrides.vision.deployments.own.image: missing; deployment 'own' has scoring code, which"
        " travels in an image built on the serving image: pin one here (or set ml-endpoints:buildImages: true)"
    ) in " ".join(result.output.split())
    stack = root / "stacks" / "Pulumi.prod.yaml"
    stack.write_text(
        stack.read_text(encoding="utf-8") + f"        own: {{image: registry.example.com/ml/vision-own{PIN}}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "manifests"
    result = CliRunner().invoke(
        build_app(), ["plan", "--stack", "prod", "--project", str(root), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["schemaProblems"], report["violations"], report["blocked"]) == ([], [], False)
    docs = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.yaml"))]
    pod = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "vision-own")
    pod = pod["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    server = containers["server"]
    assert containers["auth"]["image"] == f"registry.example.com/ml/vision-own{PIN}"  # serving image + the code
    assert server["env"] == [
        {"name": "AML_APP_ROOT", "value": "/var/azureml-app"},
        {"name": "AZUREML_ENTRY_SCRIPT", "value": "serve-code/serve.py"},
    ]
    assert {"name": "code", "mountPath": "/var/azureml-app/serve-code", "readOnly": True} in server["volumeMounts"]
    assert {"name": "code", "emptyDir": {}} in pod["volumes"]
    [copy_code] = pod["initContainers"]
    assert copy_code["name"] == "copy-code"
    assert copy_code["image"] == f"registry.example.com/ml/vision-own{PIN}"
    # Everything of /var/azureml-app but the model folder Azure keeps there (this deployment has no model).
    assert copy_code["command"][3:] == ["/var/azureml-app", "/mnt/code", "azureml-models"]
    assert copy_code["volumeMounts"] == [{"name": "code", "mountPath": "/mnt/code"}]
    assert own_file.is_file()


def test_byoc_code_rides_in_the_sidecar_image_the_stack_builds(tmp_path: Path) -> None:
    from components.builders.stack_config import load_stack_config, settings_from_config
    from components.builders.stack_resolve import resolve_stack

    root = _project(tmp_path, "dev")
    _with_code(root)
    values = load_stack_config(root, "dev")
    values.update(buildImages=True, imageRegistry="registry.example.com/ml-dev")
    resolved = resolve_stack(settings_from_config(values, "dev"), root)
    own = next(d for d in resolved.online[0].deployments if d.spec.name == "own")
    assert own.image is None and own.build is not None and own.build.base is None
    assert own.build.repository == "registry.example.com/ml-dev/vision-own"
    assert own.build.args == {
        "BASE_IMAGE": f"registry.example.com/ml/endpoints-serving{PIN}",
        "CODE_DIR": "serve-code",
        "SCORING_SCRIPT": "serve.py",
        "CONDA_FILE": "",  # the user's container brings its environment
        "MODEL_PATH": "",  # no model
        "MODEL_DIR": "/var/azureml-app/azureml-models/model/1",
    }
