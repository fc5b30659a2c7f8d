"""Azure ML's two other inference servers on the cluster for real: a stack with a Triton deployment and a custom
container (BYOC) with scoring code (fixtures/custom_servers) is previewed with the policy pack, `pulumi up`-ed
against the throwaway API server of ``endpoints cluster up`` and destroyed.

Every image is pinned and none is pulled: kwok runs no container, it marks the scheduled pods Running and Ready, so
what is checked is what the API server holds (the pods' shape, their probes, ports and mounts) and that the engine's
rollout await sees every replica Ready. That the images serve is tested elsewhere (tests/images: the BYOC image the
tests build; a Triton image cannot be pulled here).

The tests run in file order and share the session's cluster and Pulumi project (test_e2e.py's fixtures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import (
    CUSTOM_SERVERS,
    ENDPOINTS,
    PART_OF,
    Cluster,
    Project,
    contains,
    get_object,
    install_custom_servers,
    labelled_objects,
    list_objects,
    manifests_in,
)

from components.builders.common import SERVING_PORT

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

NS = "ml-custom-servers"
PIN = "@sha256:" + "3" * 64
# Where the Triton deployment's model (models/triton of the endpoint folder) lies: Azure's AZUREML_MODEL_DIR for
# model densenet version 1, then the model folder's basename.
TRITON_MODEL_DIR = "/var/azureml-app/azureml-models/densenet/1"


def _containers(dep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}


def _probe(container: dict[str, Any], kind: str) -> tuple[str, int]:
    """The probe's path and the container port number it targets (a named port resolved on the container)."""
    get = container[kind]["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
    return get["path"], port


def test_custom_servers_stack_init(project: Project) -> None:
    install_custom_servers(project.root)
    project.pulumi("stack", "init", CUSTOM_SERVERS, "--secrets-provider", "passphrase")


def test_preview_with_the_policy_pack_has_no_mandatory_violation(project: Project) -> None:
    proc = project.pulumi("preview", "--stack", CUSTOM_SERVERS, "--policy-pack", "policies", "--diff")
    out = proc.stdout + proc.stderr
    assert "[mandatory]" not in out and "[advisory]" not in out, out[-4000:]
    # The preview saw both servers (the pack checked them): a Deployment per server with its container images.
    assert f"registry.example.com/mirror/tritonserver{PIN}" in out, out[-4000:]
    assert f"registry.example.com/team/server{PIN}" in out, out[-4000:]


def test_the_pack_checks_the_custom_servers(project: Project) -> None:
    """The same preview fails on a mandatory rule of the custom container's Deployment (prod: 3 replicas)."""
    path = project.root / "stacks" / f"Pulumi.{CUSTOM_SERVERS}.yaml"
    original = path.read_text()
    path.write_text(original.replace("        own: {image:", "        own: {instanceCount: 1, image:", 1))
    try:
        proc = project.pulumi("preview", "--stack", CUSTOM_SERVERS, "--policy-pack", "policies", check=False)
    finally:
        path.write_text(original)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert 'Deployment "vision-own" runs 1 replica; set replicas (instance_count) to 3 or more' in out, out[-4000:]


def test_up_creates_both_servers_as_the_builders_render_them(
    project: Project, cluster: Cluster, tmp_path: Path
) -> None:
    # The engine awaits each Deployment's rollout: `up` returns once every replica is Ready (kwok marks them).
    project.pulumi("up", "--stack", CUSTOM_SERVERS, "--policy-pack", "policies", "--yes", timeout=1500)
    project.run(ENDPOINTS, "plan", "--stack", CUSTOM_SERVERS, "--out", str(tmp_path / "plan"))
    client = cluster.client()
    problems = []
    for want in manifests_in(tmp_path / "plan"):
        meta = want["metadata"]
        live = get_object(client, want["apiVersion"], want["kind"], meta["name"], meta.get("namespace"))
        if want["kind"] == "Secret":  # the plan has placeholders
            assert sorted(live["data"]) == sorted(want["stringData"]), meta["name"]
            want = {k: v for k, v in want.items() if k != "stringData"}
        problems += [f"{want['kind']} {meta['name']}{d}" for d in contains(live, want)]
    assert problems == []
    for name in ("vision-tri", "vision-own"):
        dep = get_object(client, "apps/v1", "Deployment", name, NS)
        assert (dep["spec"]["replicas"], dep["status"].get("readyReplicas")) == (3, 3), (name, dep["status"])
        pods = list_objects(client, "v1", "Pod", NS, label_selector=f"ml-endpoints.io/deployment={name.split('-')[1]}")
        ready = [p for p in pods if {"type": "Ready", "status": "True"}.items() <= _ready(p).items()]
        assert len(ready) == 3, [(p["metadata"]["name"], p["status"].get("conditions")) for p in pods]


def _ready(pod: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"), {})


def test_the_custom_container_runs_its_image_with_its_routes_and_code(cluster: Cluster) -> None:
    client = cluster.client()
    dep = get_object(client, "apps/v1", "Deployment", "vision-own", NS)
    pod = dep["spec"]["template"]["spec"]
    containers = _containers(dep)
    assert list(containers) == ["server", "auth"]
    server, auth = containers["server"], containers["auth"]
    assert server["image"] == f"registry.example.com/team/server{PIN}"
    assert "args" not in server and "command" not in server  # the image's own entrypoint
    # inference_config: liveness /alive and scoring /predict on 8080, readiness /healthy on 8081.
    assert sorted((p["containerPort"], p["name"]) for p in server["ports"]) == [(8080, "scoring"), (8081, "p8081")]
    assert _probe(server, "livenessProbe") == ("/alive", 8080)
    assert _probe(server, "readinessProbe") == ("/healthy", 8081)
    # The auth proxy forwards to the scoring port and waits on the readiness route.
    args = auth["args"]
    assert args[args.index("--upstream-port") + 1] == "8080"
    assert (args[args.index("--readiness-path") + 1], args[args.index("--readiness-port") + 1]) == ("/healthy", "8081")
    # code_configuration: copied from the proxy's image to where Azure mounts it.
    [copy_code] = pod["initContainers"]
    assert (copy_code["name"], copy_code["image"]) == ("copy-code", f"registry.example.com/ml/vision-own{PIN}")
    assert copy_code["volumeMounts"] == [{"name": "code", "mountPath": "/mnt/code"}]
    assert {"name": "code", "emptyDir": {}} in pod["volumes"]
    assert {"name": "code", "mountPath": "/var/azureml-app/serve-code", "readOnly": True} in server["volumeMounts"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert (env["AML_APP_ROOT"], env["AZUREML_ENTRY_SCRIPT"]) == ("/var/azureml-app", "serve-code/serve.py")


def test_triton_serves_its_model_repository_with_the_v2_health_routes(cluster: Cluster) -> None:
    client = cluster.client()
    dep = get_object(client, "apps/v1", "Deployment", "vision-tri", NS)
    pod = dep["spec"]["template"]["spec"]
    containers = _containers(dep)
    assert list(containers) == ["server", "auth"]
    server, auth = containers["server"], containers["auth"]
    assert server["image"] == f"registry.example.com/mirror/tritonserver{PIN}"
    assert server["args"][:3] == [
        "tritonserver",
        f"--model-repository={TRITON_MODEL_DIR}/triton",
        "--http-port=8000",
    ]
    assert [p["containerPort"] for p in server["ports"]] == [8000]
    assert _probe(server, "livenessProbe") == ("/v2/health/live", 8000)
    assert _probe(server, "readinessProbe") == ("/v2/health/ready", 8000)
    args = auth["args"]
    assert args[args.index("--upstream-port") + 1] == "8000"
    assert args[args.index("--readiness-path") + 1] == "/v2/health/ready"
    # The model repository: copied from the proxy's image (serving image + model) into the volume Triton reads.
    [copy_model] = pod["initContainers"]
    assert (copy_model["name"], copy_model["image"]) == ("copy-model", f"registry.example.com/ml/vision-tri{PIN}")
    assert copy_model["command"][-2:] == [TRITON_MODEL_DIR, "/mnt/model"]
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]
    assert {"name": "model", "mountPath": TRITON_MODEL_DIR, "readOnly": True} in server["volumeMounts"]
    assert {"name": "AZUREML_MODEL_DIR", "value": TRITON_MODEL_DIR} in server["env"]
    # Standard_NC4as_T4_v3: one T4 for Triton, on the GPU pool's nodes.
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    pods = list_objects(client, "v1", "Pod", NS, label_selector="ml-endpoints.io/deployment=tri")
    assert pods and all(p["spec"]["nodeName"].startswith("kwok-gpu-t4-") for p in pods)


def test_the_route_reaches_each_server_through_its_auth_proxy(cluster: Cluster) -> None:
    """HTTPRoute backend -> Service port -> the proxy's `http` port -> the scoring route's port (the proxy's
    upstream): the chain the routes set, followed on the server's objects."""
    client = cluster.client()
    route = get_object(client, "gateway.networking.k8s.io/v1", "HTTPRoute", "vision", NS)
    default = route["spec"]["rules"][-1]
    assert default["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    backends = {b["name"]: b for b in default["backendRefs"]}
    assert {n: b["weight"] for n, b in backends.items()} == {"vision-own": 20, "vision-tri": 80}
    upstream = {}
    for name, backend in backends.items():
        svc = get_object(client, "v1", "Service", name, NS)
        [port] = [p for p in svc["spec"]["ports"] if p["port"] == backend["port"]]
        auth = _containers(get_object(client, "apps/v1", "Deployment", name, NS))["auth"]
        [target] = [p for p in auth["ports"] if p["name"] == port["targetPort"]]
        assert target["containerPort"] == SERVING_PORT  # where the proxy listens (its --port)
        assert auth["args"][auth["args"].index("--port") + 1] == str(SERVING_PORT)
        upstream[name] = int(auth["args"][auth["args"].index("--upstream-port") + 1])
    assert upstream == {"vision-own": 8080, "vision-tri": 8000}


def test_destroy_leaves_no_object_with_the_projects_labels(project: Project, cluster: Cluster) -> None:
    project.pulumi("destroy", "--stack", CUSTOM_SERVERS, "--yes", timeout=1500)
    client = cluster.client()
    assert not [n for n in list_objects(client, "v1", "Namespace") if n["metadata"]["name"] == NS]
    assert labelled_objects(client, PART_OF, 180) == []
