"""The cluster path for real: the offline plan, `pulumi preview` with the policy pack, `pulumi up`, promotion, the
batch job API and `pulumi destroy`, against the throwaway API server of ``endpoints cluster up``.

The tests run in file order and share the session's cluster and stacks (staging and prod are deployed once and
destroyed at the end). Dev builds its images (the docker provider, which the toolchain cannot build), so dev is
previewed with its images pinned by config and never deployed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cluster_helpers import (
    CUSTOM_SERVERS,
    ENDPOINTS,
    PART_OF,
    REPO,
    Cluster,
    Project,
    contains,
    free_port,
    get_object,
    install_custom_servers,
    labelled_objects,
    list_objects,
    manifests_in,
    workflow_steps,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

STACKS = ("dev", "staging", "prod")
DIGEST = "registry.example.com/ml/car-classifier-bob@sha256:" + "5e" * 32


def _dev_pinned(project: Project) -> None:
    """Dev without image builds: pin the images staging runs (the docker provider is not in the toolchain)."""
    path = project.root / "stacks" / "Pulumi.dev.yaml"
    doc = yaml.safe_load(path.read_text())
    staging = yaml.safe_load((project.root / "stacks" / "Pulumi.staging.yaml").read_text())["config"]
    cfg = doc["config"]
    cfg["ml-endpoints:buildImages"] = False
    cfg["ml-endpoints:jobApiImage"] = staging["ml-endpoints:jobApiImage"]
    for ep, ov in staging["ml-endpoints:overrides"].items():
        for dep, d in ov["deployments"].items():
            cfg["ml-endpoints:overrides"][ep]["deployments"][dep]["image"] = d["image"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


# ------------------------------------------------------------------------------------------- the cluster itself


def test_cluster_status_reports_every_process_and_ready_nodes(cluster: Cluster) -> None:
    proc = subprocess.run(
        [ENDPOINTS, "cluster", "status", "--state-dir", str(cluster.state_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["healthy"] is True
    assert set(report["processes"]) >= {"etcd", "kube-apiserver", "kube-controller-manager", "kwok"}
    assert all(p["running"] for p in report["processes"].values())
    assert report["nodes"] and all(report["nodes"].values())
    gpu = get_object(cluster.client(), "v1", "Node", "kwok-gpu-t4-0")
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert gpu["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


# -------------------------------------------------------------------------------------- deliverable 4: dry run


@pytest.mark.parametrize("stack", [*STACKS, CUSTOM_SERVERS])
def test_every_planned_object_passes_a_server_side_dry_run(cluster: Cluster, stack: str, tmp_path: Path) -> None:
    """The example stacks, and the test-only stack with a Triton and a custom-container deployment
    (test_custom_servers_cluster.py deploys it)."""
    from endpoints.cluster.apply import apply, dry_run_all

    root = REPO if stack in STACKS else install_custom_servers(tmp_path / "project")
    out = tmp_path / "plan"
    proc = subprocess.run(
        [ENDPOINTS, "plan", "--stack", stack, "--project", str(root), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    objs = manifests_in(out)
    if stack in STACKS:
        assert len(objs) > 20
    else:
        deployments = sorted(o["metadata"]["name"] for o in objs if o["kind"] == "Deployment")
        assert deployments == ["vision-own", "vision-tri"]
    client = cluster.client()
    namespaces = [o for o in objs if o["kind"] == "Namespace"]
    created = []
    for ns in namespaces:  # admission refuses objects of a namespace that does not exist, even in a dry run
        apply(client, ns)
        created.append(ns["metadata"]["name"])
    try:
        rejected = dry_run_all(client, objs)
    finally:
        res = client.resources.get(api_version="v1", kind="Namespace")
        for name in created:
            res.delete(name=name)
        from endpoints.cluster.apply import wait_for

        for name in created:
            wait_for(
                f"namespace {name} gone",
                lambda n=name: not [x for x in list_objects(client, "v1", "Namespace") if x["metadata"]["name"] == n],
                180,
            )
    assert [str(r) for r in rejected] == []


def test_the_dry_run_reports_what_the_server_rejects(cluster: Cluster) -> None:
    """The check can fail: a CEL rule of the HTTPRoute CRD (weights) and the Deployment schema refuse bad objects."""
    from endpoints.cluster.apply import dry_run_all

    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"rules": [{"backendRefs": [{"name": "svc", "port": 80, "weight": -1}]}]},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "templat": {}},
    }
    rejected = dry_run_all(cluster.client(), [route, deployment])
    assert [r.ref for r in rejected] == ["HTTPRoute default/bad", "Deployment default/bad"]
    assert "weight" in rejected[0].message
    # Server-side apply checks the patch against the schema before anything else and names the field.
    assert ".spec.templat: field not declared in schema" in rejected[1].message


# ------------------------------------------------------------------------------------ preview with the policies


def test_stacks_init(project: Project) -> None:
    _dev_pinned(project)
    # Staging and prod share this cluster: only one of them creates the cluster-scoped PriorityClasses (the key's
    # documented use); staging does.
    prod = project.root / "stacks" / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("config:\n", "config:\n  ml-endpoints:createPriorityClasses: false\n", 1))
    for stack in STACKS:
        project.pulumi("stack", "init", stack, "--secrets-provider", "passphrase")


@pytest.mark.parametrize("stack", STACKS)
def test_preview_with_the_policy_pack_has_no_mandatory_violation(project: Project, stack: str) -> None:
    proc = project.pulumi("preview", "--stack", stack, "--policy-pack", "policies", "--diff")
    out = proc.stdout + proc.stderr
    assert "[mandatory]" not in out, out[-4000:]
    if stack == "dev":  # one instance per deployment: the advisory min-replicas rule, shown as a warning
        assert "[advisory]" in out and "min-replicas" in out, out[-4000:]
        assert 'Deployment "car-classifier-bob" runs 1 replica; set replicas (instance_count) to 2 or more' in out


def test_preview_fails_on_a_mandatory_violation_with_the_rules_message(project: Project) -> None:
    path = project.root / "stacks" / "Pulumi.prod.yaml"
    original = path.read_text()
    path.write_text(original.replace("          instanceCount: 3\n", "          instanceCount: 1\n"))
    try:
        proc = project.pulumi("preview", "--stack", "prod", "--policy-pack", "policies", check=False)
    finally:
        path.write_text(original)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "[mandatory]" in out and "min-replicas" in out, out[-4000:]
    assert 'Deployment "car-classifier-bob" runs 1 replica; set replicas (instance_count) to 3 or more' in out


# ------------------------------------------------------------------------------------------------- pulumi up


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_up_creates_every_object_as_the_builders_render_it(
    project: Project, cluster: Cluster, stack: str, tmp_path: Path
) -> None:
    project.pulumi("up", "--stack", stack, "--policy-pack", "policies", "--yes", timeout=1500)
    project.run(ENDPOINTS, "plan", "--stack", stack, "--out", str(tmp_path / "plan"))
    client = cluster.client()
    problems = []
    for want in manifests_in(tmp_path / "plan"):
        meta = want["metadata"]
        live = get_object(client, want["apiVersion"], want["kind"], meta["name"], meta.get("namespace"))
        if want["kind"] == "Secret":  # the plan has placeholders; the keys are checked below
            assert sorted(live["data"]) == sorted(want["stringData"]), meta["name"]
            want = {k: v for k, v in want.items() if k != "stringData"}
        problems += [f"{want['kind']} {meta['name']}{d}" for d in contains(live, want)]
    assert problems == []
    ns = f"ml-{stack}"
    for name in ("car-classifier-alice", "car-classifier-bob", "car-classifier-batch-jobs"):
        dep = get_object(client, "apps/v1", "Deployment", name, ns)
        assert dep["status"].get("readyReplicas") == dep["status"]["replicas"], (name, dep["status"])
    bob_pods = list_objects(client, "v1", "Pod", ns, label_selector="ml-endpoints.io/deployment=bob")
    assert bob_pods and all(p["spec"]["nodeName"].startswith("kwok-gpu-t4-") for p in bob_pods)


def test_route_weights_mirror_and_header_pins_are_served(project: Project, cluster: Cluster) -> None:
    route = get_object(cluster.client(), "gateway.networking.k8s.io/v1", "HTTPRoute", "car-classifier", "ml-staging")
    rules = route["spec"]["rules"]
    pins = {r["matches"][0]["headers"][0]["value"]: r for r in rules if r.get("matches", [{}])[0].get("headers")}
    assert set(pins) == {"alice", "bob"}
    assert pins["bob"]["matches"][0]["headers"][0]["name"] == "azureml-model-deployment"
    default = next(r for r in rules if r not in pins.values())
    # bob has weight 0: the builder leaves it out of the split (it is reached by its pin and the mirror only).
    assert [(b["name"], b["weight"]) for b in default["backendRefs"]] == [("car-classifier-alice", 100)]
    mirror = next(f for f in default["filters"] if f["type"] == "RequestMirror")["requestMirror"]
    assert (mirror["backendRef"]["name"], mirror["percent"]) == ("car-classifier-bob", 10)


def test_no_key_in_plain_text(project: Project, cluster: Cluster) -> None:
    for stack in ("staging", "prod"):
        outputs = json.loads(project.pulumi("stack", "output", "--stack", stack, "--json", "--show-secrets").stdout)
        keys = [v for k, v in outputs.items() if k.endswith("Key")]
        assert len(keys) == 4 and all(len(k) == 48 for k in keys)
        export = project.pulumi("stack", "export", "--stack", stack).stdout
        plain_outputs = project.pulumi("stack", "output", "--stack", stack, "--json").stdout
        client = cluster.client()
        live = json.dumps(
            [
                *list_objects(client, "v1", "Secret", f"ml-{stack}"),
                *list_objects(client, "apps/v1", "Deployment", f"ml-{stack}"),
                *list_objects(client, "v1", "ConfigMap", f"ml-{stack}"),
            ]
        )
        for key in keys:
            assert key not in export and key not in plain_outputs and key not in live
        secret = get_object(client, "v1", "Secret", "car-classifier-keys", f"ml-{stack}")
        assert base64.b64decode(secret["data"]["primary"]).decode() == outputs["car-classifier.primaryKey"]
        assert not any(key in json.dumps(secret["metadata"].get("annotations") or {}) for key in keys)


# --------------------------------------------------------------------------------- traffic change, no replace


def _uids(client: Any, ns: str) -> dict[str, str]:
    out = {}
    for api, kind in (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "Secret"),
        ("v1", "ConfigMap"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ):
        for o in list_objects(client, api, kind, ns, label_selector=PART_OF):
            out[f"{kind}/{o['metadata']['name']}"] = o["metadata"]["uid"]
    return out


def test_traffic_change_is_one_in_place_update_of_the_route(project: Project, cluster: Cluster) -> None:
    client = cluster.client()
    before = _uids(client, "ml-prod")
    path = project.root / "stacks" / "Pulumi.prod.yaml"
    text = path.read_text()
    path.write_text(text.replace("        alice: 90\n        bob: 10\n", "        alice: 50\n        bob: 50\n", 1))
    preview = json.loads(project.pulumi("preview", "--stack", "prod", "--json").stdout)
    changed = [(s["op"], s["urn"].rsplit("::", 1)[1]) for s in preview["steps"] if s["op"] != "same"]
    assert changed == [("update", "car-classifier-route")], changed
    project.pulumi("up", "--stack", "prod", "--yes", timeout=1500)
    assert _uids(client, "ml-prod") == before
    route = get_object(client, "gateway.networking.k8s.io/v1", "HTTPRoute", "car-classifier", "ml-prod")
    default = next(r for r in route["spec"]["rules"] if not r.get("matches", [{}])[0].get("headers"))
    assert [b["weight"] for b in default["backendRefs"]] == [50, 50]


# -------------------------------------------------------------------------------------------------- promotion


def test_promote_workflow_then_up_runs_the_promoted_image(project: Project, cluster: Cluster) -> None:
    """A new bob build reaches staging (dev -> staging with --image), then examples/ci/promote.yml's commands
    promote it to prod and run `pulumi up`: prod's bob pods run that digest."""
    project.run(ENDPOINTS, "promote", "bob", "--from", "dev", "--to", "staging", "--image", DIGEST)
    project.pulumi("up", "--stack", "staging", "--yes", timeout=1500)
    inputs = {"deployment": "bob", "from": "staging", "to": "prod", "stage": "pin", "percent": "10", "image": ""}
    env = {**project.env, "DEPLOYMENT": "bob", "FROM": "staging", "TO": "prod", "PERCENT": "10", "IMAGE": ""}
    ran = []
    for step in workflow_steps(project.root / "examples" / "ci" / "promote.yml", inputs, env):
        proc = project.run("bash", "-euo", "pipefail", "-c", step["run"], env=env, timeout=1500, check=False)
        assert proc.returncode == 0, f"{step['name']}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        ran.append(step["name"])
    assert ran == ["Promote (pin image and model)", "Offline plan of the promoted stack", "Pulumi up"]
    client = cluster.client()
    dep = get_object(client, "apps/v1", "Deployment", "car-classifier-bob", "ml-prod")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == DIGEST
    pods = list_objects(client, "v1", "Pod", "ml-prod", label_selector="ml-endpoints.io/deployment=bob")
    running = [
        p for p in pods if p["spec"]["containers"][0]["image"] == DIGEST and p["status"].get("phase") == "Running"
    ]
    assert len(running) == dep["spec"]["replicas"]


# ------------------------------------------------------------------------------------------------ batch job API


def test_batch_job_api_creates_lists_reports_and_cancels_indexed_jobs(cluster: Cluster, tmp_path: Path) -> None:
    """The real job API process, with the Job template Pulumi deployed, against the API server.

    No Kueue controller runs here, so the test admits the job itself (unsuspends it) as Kueue would; kwok then
    runs and completes its pods, and the Job controller marks it Complete.
    """
    client = cluster.client()
    ns = "ml-staging"
    cm = get_object(client, "v1", "ConfigMap", "car-classifier-batch-nightly-batch-template", ns)
    templates = tmp_path / "templates"
    templates.mkdir()
    for name, text in cm["data"].items():
        (templates / name).write_text(text)
    port = free_port()
    # The arguments Pulumi deployed the job API with; only the templates folder and the address are this machine's.
    deployed = get_object(client, "apps/v1", "Deployment", "car-classifier-batch-jobs", ns)
    [container] = deployed["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    for flag, value in (("--templates", str(templates)), ("--host", "127.0.0.1"), ("--port", str(port))):
        args[args.index(flag) + 1] = value
    assert args[args.index("--owner-deployment") + 1] == "car-classifier-batch-jobs"
    env = {"KUBECONFIG": str(cluster.kubeconfig), "ENDPOINTS_AUTH_MODE": "none", "PATH": "/usr/bin:/bin"}
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.batch.api", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        from endpoints.cluster.apply import wait_for

        wait_for("job API", lambda: httpx.get(f"{base}/", timeout=2).status_code == 200, 120)
        r = httpx.post(f"{base}/jobs", json={"input": "/mnt/batch/in", "job_id": "e2e-job-1"}, timeout=30)
        assert r.status_code == 202, r.text
        job = get_object(client, "batch/v1", "Job", "e2e-job-1", ns)
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["suspend"] is True
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "car-classifier-batch-batch"
        # Owned by the job API's Deployment: the jobs go with the endpoint (see the destroy test).
        [owner] = job["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Deployment",
            "car-classifier-batch-jobs",
            deployed["metadata"]["uid"],
        )
        assert httpx.get(f"{base}/jobs/e2e-job-1", timeout=30).json()["status"] == "Queued"
        client.resources.get(api_version="batch/v1", kind="Job").patch(
            name="e2e-job-1",
            namespace=ns,
            body={"spec": {"suspend": False}},
            content_type="application/merge-patch+json",
        )
        wait_for(
            "job completed",
            lambda: httpx.get(f"{base}/jobs/e2e-job-1", timeout=30).json()["status"] == "Completed",
            300,
        )
        r = httpx.post(f"{base}/jobs", json={"input": "/mnt/batch/in", "job_id": "e2e-job-2"}, timeout=30)
        assert r.status_code == 202, r.text
        listed = httpx.get(f"{base}/jobs", timeout=30).json()["jobs"]
        assert [j["id"] for j in listed] == ["e2e-job-2", "e2e-job-1"]
        canceled = httpx.post(f"{base}/jobs/e2e-job-2/cancel", timeout=30)
        assert canceled.status_code == 202 and canceled.json()["status"] == "Canceled"
        again = httpx.post(f"{base}/jobs/e2e-job-2/cancel", timeout=30)
        assert again.status_code == 409
        assert get_object(client, "batch/v1", "Job", "e2e-job-2", ns)["spec"]["suspend"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


# -------------------------------------------------------------------------------------------------- destroy


def test_destroy_leaves_no_object_with_the_projects_labels(project: Project, cluster: Cluster) -> None:
    for stack in ("staging", "prod"):
        project.pulumi("destroy", "--stack", stack, "--yes", timeout=1500)
    assert labelled_objects(cluster.client(), PART_OF, 180) == []
