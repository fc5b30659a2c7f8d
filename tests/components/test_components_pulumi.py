"""Components and the whole Pulumi program under Pulumi's mocks (``pulumi.runtime.set_mocks``), in-process.

Assertions on outputs run inside ``Output.all(...).apply(...)`` and name the URN; the recorded registrations are
then checked as the engine would receive them: every Kubernetes object validates against its schema, and no key
appears in plain text in any input, export or log line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi_harness import (
    REPO_ROOT,
    SECRET_SENTINEL,
    Run,
    as_object,
    mock_password,
    plain_strings,
    run_program,
    run_pulumi,
    stack_config,
)
from specs_factory import DIGEST, SETTINGS, deployment, endpoint, instance

from components.builders.image import image_build_args
from components.builders.stack_config import KeyRotation
from components.compute_pool import ComputePool, ComputePoolArgs
from components.k8s_schema import validate_object
from components.online_deployment import OnlineDeployment, OnlineDeploymentArgs
from components.online_endpoint import OnlineEndpoint, OnlineEndpointArgs
from endpoints.app.promote import promote

STACKS = ["dev", "staging", "prod"]
DOMAINS = {
    "dev": "dev.endpoints.example.com",
    "staging": "staging.endpoints.example.com",
    "prod": "endpoints.internal.example.com",
}
EXAMPLE = REPO_ROOT / "examples" / "car-classifier"


def _k8s(run: Run) -> list[Any]:
    return [r for r in run.resources if r.typ.startswith("kubernetes:")]


def _assert_no_plain_secrets(run: Run) -> None:
    for r in run.resources:
        leaked = [s for s in plain_strings(r.inputs) if SECRET_SENTINEL in s]
        assert not leaked, f"{run.urn(r)}: key material in plain text in its inputs"
    for name, value in run.exports.items():
        if SECRET_SENTINEL in str(value):
            assert run.export_secret[name], f"export {name!r} carries a key but is not a secret output"


# ------------------------------------------------------------------------------------------------------ components


def test_online_endpoint_component() -> None:
    ep = endpoint(traffic={"alice": 90, "bob": 10})
    deps = [deployment("alice"), deployment("bob")]
    created: dict[str, OnlineEndpoint] = {}

    def program() -> Any:
        comp = OnlineEndpoint("cars", OnlineEndpointArgs(ep, deps, SETTINGS))
        created["cars"] = comp

        def check(values: list[Any]) -> None:
            urn, scoring, swagger, primary, secondary, secret_name = values
            assert scoring == "https://cars.test.example.com/score", f"{urn}: scoring_uri {scoring!r}"
            assert swagger == "https://cars.test.example.com/swagger.json", f"{urn}: swagger_uri {swagger!r}"
            assert primary == mock_password("cars-primary-key"), f"{urn}: primary_key"
            assert secondary == mock_password("cars-secondary-key"), f"{urn}: secondary_key"
            assert secret_name == "cars-keys", f"{urn}: secret_name {secret_name!r}"

        async def secret_flags() -> list[bool]:
            return [await comp.primary_key.is_secret(), await comp.secondary_key.is_secret()]

        def check_secret(flags: list[bool]) -> None:
            assert flags == [True, True], f"urn cars: keys must be secret outputs, got {flags}"

        return pulumi.Output.all(
            pulumi.Output.all(
                comp.urn, comp.scoring_uri, comp.swagger_uri, comp.primary_key, comp.secondary_key, comp.secret_name
            ).apply(check),
            pulumi.Output.from_input(_future(secret_flags())).apply(check_secret),
        )

    run = run_pulumi(program)
    assert sorted((r.typ, r.name) for r in run.resources) == sorted(
        [
            ("endpoints:online_endpoint:OnlineEndpoint", "cars"),
            ("pulumi-python:dynamic:Resource", "cars-primary-key"),
            ("pulumi-python:dynamic:Resource", "cars-secondary-key"),
            ("pulumi-python:dynamic:Resource", "cars-signing-key"),
            ("kubernetes:core/v1:Secret", "cars-keys"),
            ("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "cars-route"),
            ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "cars-ingress"),
        ]
    )
    inputs = run.named("cars-primary-key").inputs
    assert {k: v for k, v in inputs.items() if k != "__provider"} == {"rotation": "0", "length": 48}
    assert run.named("cars-signing-key").inputs["length"] == 64
    secret = as_object(run.named("cars-keys"))
    assert secret["stringData"] == {"primary": "[secret]", "secondary": "[secret]", "token-signing-key": "[secret]"}
    for r in _k8s(run):
        assert validate_object(as_object(r)) == [], run.urn(r)
    _assert_no_plain_secrets(run)


def test_online_deployment_component_with_pinned_image() -> None:
    ep = endpoint(traffic={"alice": 100})
    dep = deployment("alice", instance_count=2, egress_public_network_access="disabled")

    def program() -> Any:
        comp = OnlineDeployment(
            "cars-alice", OnlineDeploymentArgs(ep, dep, instance("Standard_DS3_v2"), SETTINGS, image=DIGEST)
        )

        def check(values: list[Any]) -> None:
            urn, image, name, svc = values
            assert (image, name, svc) == (DIGEST, "cars-alice", "cars-alice"), f"{urn}: outputs {values[1:]}"

        return pulumi.Output.all(comp.urn, comp.image, comp.deployment_name, comp.service_name).apply(check)

    run = run_pulumi(program)
    assert sorted((r.typ, r.name) for r in run.resources) == sorted(
        [
            ("endpoints:online_deployment:OnlineDeployment", "cars-alice"),
            ("kubernetes:apps/v1:Deployment", "cars-alice-deploy"),
            ("kubernetes:core/v1:Service", "cars-alice-svc"),
            ("kubernetes:policy/v1:PodDisruptionBudget", "cars-alice-pdb"),
            ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "cars-alice-egress"),
        ]
    )
    deploy = as_object(run.named("cars-alice-deploy"))
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == DIGEST
    for r in _k8s(run):
        assert validate_object(as_object(r)) == [], run.urn(r)


def test_online_deployment_component_builds_its_image() -> None:
    ep = endpoint(name="car-classifier", traffic={"alice": 100})
    project = EXAMPLE
    dep_file = project / "deployments" / "alice.yml"
    from endpoints.project import load_endpoint_project

    spec = load_endpoint_project(project).deployments["alice"]
    build = image_build_args(
        REPO_ROOT, project, dep_file, spec, "car-classifier", "reg.example.com/serving:1", "reg.example.com/ml"
    )

    def program() -> Any:
        comp = OnlineDeployment(
            "car-classifier-alice",
            OnlineDeploymentArgs(ep, spec, instance("Standard_DS3_v2"), SETTINGS, build=build),  # type: ignore[arg-type]
        )

        def check(values: list[Any]) -> None:
            urn, image = values
            assert image.startswith("reg.example.com/ml/car-classifier-alice@sha256:"), f"{urn}: image {image!r}"

        return pulumi.Output.all(comp.urn, comp.image).apply(check)

    run = run_pulumi(program)
    image = run.named("car-classifier-alice-image")
    assert image.typ == "docker:index/image:Image"
    assert image.inputs["imageName"] == "reg.example.com/ml/car-classifier-alice:pulumi"
    assert image.inputs["build"]["args"] == build.args
    assert image.inputs["build"]["context"] == str(build.context)
    assert image.inputs["skipPush"] is False
    container = as_object(run.named("car-classifier-alice-deploy"))["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("reg.example.com/ml/car-classifier-alice@sha256:")


def test_online_deployment_builds_the_serving_layer_on_environment_image_first() -> None:
    from dataclasses import replace

    from components.builders.image import custom_base_build
    from endpoints.project import load_endpoint_project

    ep = endpoint(name="car-classifier", traffic={"alice": 100})
    dep_file = EXAMPLE / "deployments" / "alice.yml"
    spec = load_endpoint_project(EXAMPLE).deployments["alice"]
    base = custom_base_build(REPO_ROOT, "reg.example.com/py:3.12", "car-classifier", "alice", "reg.example.com/ml")
    build = image_build_args(
        REPO_ROOT, EXAMPLE, dep_file, spec, "car-classifier", "<custom-base>", "reg.example.com/ml"
    )
    build = replace(build, base=base)

    def program() -> Any:
        return OnlineDeployment(
            "car-classifier-alice",
            OnlineDeploymentArgs(ep, spec, instance("Standard_DS3_v2"), SETTINGS, build=build),  # type: ignore[arg-type]
        ).urn

    run = run_pulumi(program)
    layer = run.named("car-classifier-alice-image-base")
    assert layer.inputs["imageName"] == "reg.example.com/ml/car-classifier-alice-base:pulumi"
    assert layer.inputs["build"]["dockerfile"] == str((REPO_ROOT / "serving" / "Dockerfile.custom-base").resolve())
    assert layer.inputs["build"]["args"] == {"BASE_IMAGE": "reg.example.com/py:3.12"}
    image = run.named("car-classifier-alice-image")
    assert image.inputs["build"]["args"] == {**build.args, "BASE_IMAGE": mock_state_digest(run, layer.name)}


def test_compute_pool_component() -> None:
    t4 = [instance("Standard_NC4as_T4_v3"), instance("Standard_NC8as_T4_v3")]

    def program() -> Any:
        pool = ComputePool(
            "pool-gpu-t4", ComputePoolArgs("gpu-t4", t4, SETTINGS, ["ml-a", "ml-b"], gpu_quota=4, kueue=True)
        )

        def check(values: list[Any]) -> None:
            urn, selector, tolerations, gpu = values
            assert selector == {"ml-endpoints.io/pool": "gpu-t4"}, f"{urn}: node_selector {selector}"
            assert tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], urn
            assert gpu is True, urn

        return pulumi.Output.all(pool.urn, pool.node_selector, pool.tolerations, pool.gpu).apply(check)

    run = run_pulumi(program)
    assert sorted((r.typ, r.name) for r in run.resources) == sorted(
        [
            ("endpoints:compute_pool:ComputePool", "pool-gpu-t4"),
            ("kubernetes:core/v1:ResourceQuota", "pool-gpu-t4-quota-ml-a"),
            ("kubernetes:core/v1:ResourceQuota", "pool-gpu-t4-quota-ml-b"),
            ("kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor", "pool-gpu-t4-flavor"),
        ]
    )
    for r in _k8s(run):
        assert validate_object(as_object(r)) == [], run.urn(r)


def test_compute_pool_refuses_types_of_other_pools() -> None:
    def program() -> Any:
        ComputePool("p", ComputePoolArgs("gpu-t4", [instance("Standard_DS3_v2")], SETTINGS))

    with pytest.raises(ValueError, match=r"ComputePool p: instance types \['Standard_DS3_v2'\] belong to other pools"):
        run_pulumi(program)


# --------------------------------------------------------------------------------------------------------- program


@pytest.mark.parametrize("stack", STACKS)
def test_program_of_each_stack(stack: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        run = run_program(stack)
    types = {r.typ for r in run.resources}
    assert {
        "endpoints:endpoint_namespace:EndpointNamespace",
        "endpoints:online_endpoint:OnlineEndpoint",
        "endpoints:online_deployment:OnlineDeployment",
        "endpoints:compute_pool:ComputePool",
        "endpoints:batch_platform:BatchPlatform",
        "endpoints:batch_endpoint:BatchEndpoint",
        "endpoints:batch_deployment:BatchDeployment",
    } <= types
    names = [r.name for r in run.resources]
    assert len(names) == len(set(names)), "resource names collide"
    objects = [as_object(r) for r in _k8s(run)]
    for r, obj in zip(_k8s(run), objects, strict=True):
        assert validate_object(obj) == [], run.urn(r)
    keys = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
    assert len(keys) == len(objects)
    assert run.export_secret == {
        "car-classifier-batch.jobsUri": False,
        "car-classifier-batch.primaryKey": True,
        "car-classifier-batch.secondaryKey": True,
        "car-classifier.primaryKey": True,
        "car-classifier.scoringUri": False,
        "car-classifier.secondaryKey": True,
        "car-classifier.swaggerUri": False,
        "car-classifier.alice.image": False,
        "car-classifier.bob.image": False,
        "car-classifier-batch.nightly.image": False,
    }
    # Each deployment's image as its pods run it: the pinned override, or (dev) the digest the build pushed.
    for name, deploy in (
        ("car-classifier.alice", "car-classifier-alice-deploy"),
        ("car-classifier.bob", "car-classifier-bob-deploy"),
    ):
        pod = as_object(run.named(deploy))["spec"]["template"]["spec"]
        assert run.exports[f"{name}.image"] == pod["containers"][0]["image"], name
    nightly = run.exports["car-classifier-batch.nightly.image"]
    if stack == "dev":
        assert all("@sha256:" in run.exports[f"car-classifier.{d}.image"] for d in ("alice", "bob"))
        assert nightly.startswith("registry.example.com/ml-dev/") and "@sha256:" in nightly
    else:
        pinned = stack_config(stack)["overrides"]
        for d in ("alice", "bob"):
            assert run.exports[f"car-classifier.{d}.image"] == pinned["car-classifier"]["deployments"][d]["image"]
        assert nightly == pinned["car-classifier-batch"]["deployments"]["nightly"]["image"]
    assert run.exports["car-classifier-batch.jobsUri"] == f"https://car-classifier-batch.{DOMAINS[stack]}/jobs"
    # The batch objects of the stack: once per stack (platform, pool flavor) and once per endpoint/deployment.
    batch_kinds = sorted(
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["kind"]
        in (
            "ClusterQueue",
            "ResourceFlavor",
            "PriorityClass",
            "PersistentVolumeClaim",
            "LocalQueue",
            "ConfigMap",
            "Role",
            "RoleBinding",
            "ServiceAccount",
        )
        or "batch" in o["metadata"]["name"]
    )
    ns = f"ml-{stack}"
    assert batch_kinds == sorted(
        [
            ("ClusterQueue", f"{ns}-batch"),
            ("ResourceFlavor", f"{ns}-cpu"),
            ("PriorityClass", "ml-endpoints-batch"),
            ("PriorityClass", "ml-endpoints-batch-low"),
            ("PersistentVolumeClaim", "batch-data"),
            ("ConfigMap", "car-classifier-batch-nightly-batch-template"),
            ("Secret", "car-classifier-batch-keys"),
            ("ServiceAccount", "car-classifier-batch-jobs"),
            ("Role", "car-classifier-batch-jobs"),
            ("RoleBinding", "car-classifier-batch-jobs"),
            ("Deployment", "car-classifier-batch-jobs"),
            ("Service", "car-classifier-batch-jobs"),
            ("PodDisruptionBudget", "car-classifier-batch-jobs"),
            ("HTTPRoute", "car-classifier-batch"),
            ("NetworkPolicy", "car-classifier-batch-jobs-ingress"),
            ("NetworkPolicy", "car-classifier-batch-jobs-egress"),
            ("NetworkPolicy", "car-classifier-batch-runners-egress"),
            ("LocalQueue", "car-classifier-batch-batch"),
        ]
    )
    api = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "car-classifier-batch-jobs")
    assert api["spec"]["replicas"] == {"dev": 2, "staging": 2, "prod": 3}[stack]
    _assert_no_plain_secrets(run)
    out = capsys.readouterr()
    assert SECRET_SENTINEL not in out.out + out.err
    assert all(SECRET_SENTINEL not in rec.getMessage() for rec in caplog.records)


def test_prod_program_is_private_with_three_instances() -> None:
    run = run_program("prod")
    route = as_object(run.named("car-classifier-route"))
    assert route["spec"]["parentRefs"][0]["name"] == "internal"
    assert as_object(run.named("car-classifier-bob-deploy"))["spec"]["replicas"] == 3
    alice = as_object(run.named("car-classifier-alice-deploy"))
    assert "replicas" not in alice["spec"]  # left to the HPA
    hpa = as_object(run.named("car-classifier-alice-hpa"))
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert run.exports["car-classifier.scoringUri"] == "https://car-classifier.endpoints.internal.example.com/score"


def _workflow_digest_script() -> str:
    """The Python one-liner promote.yml pipes `pulumi stack output --json` into, as the workflow has it."""
    workflow = yaml.safe_load((REPO_ROOT / "examples" / "ci" / "promote.yml").read_text(encoding="utf-8"))
    step = next(
        s for s in workflow["jobs"]["promote"]["steps"] if s.get("name") == "Image digest from the source stack"
    )
    match = re.search(r'python -c "(.+?)"\)', step["run"])
    assert match, step["run"]
    return match.group(1)


def test_promote_workflow_reads_the_built_digest_from_dev_outputs(tmp_path: Path) -> None:
    run = run_program("dev")
    # `pulumi stack output --json` prints secret outputs as "[secret]"; the rest as exported.
    outputs = {k: "[secret]" if run.export_secret[k] else v for k, v in run.exports.items()}
    proc = subprocess.run(
        [sys.executable, "-c", _workflow_digest_script()],
        input=json.dumps(outputs),
        capture_output=True,
        text=True,
        env={**os.environ, "DEPLOYMENT": "bob"},
        timeout=60,
        check=True,
    )
    image = proc.stdout.strip()
    bob = as_object(run.named("car-classifier-bob-deploy"))["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == bob
    assert re.fullmatch(r"registry\.example\.com/ml-dev/car-classifier-bob@sha256:[0-9a-f]{64}", image), image
    # ... and `endpoints promote --image "$IMAGE"` takes it: staging then pins exactly that digest.
    promotion = promote(REPO_ROOT, "bob", "dev", "staging", image=image, check=False)
    assert promotion.changes[0] == (
        "ml-endpoints:overrides.car-classifier.deployments.bob.image: "
        f"{stack_config('staging')['overrides']['car-classifier']['deployments']['bob']['image']} -> {image}"
    )


def _inputs_by_name(run: Run) -> dict[str, Any]:
    return {r.name: (r.typ, r.inputs) for r in run.resources}


def test_traffic_or_mirror_change_touches_only_the_httproute() -> None:
    base = run_program("dev")
    for change in (
        {"traffic": {"alice": 50, "bob": 50}},
        {"traffic": {"alice": 100, "bob": 0}, "mirrorTraffic": {"bob": 20}},
    ):
        overrides = {**stack_config("dev")["overrides"], "car-classifier": change}
        changed = run_program("dev", {"overrides": overrides})
        a, b = _inputs_by_name(base), _inputs_by_name(changed)
        assert a.keys() == b.keys()
        differing = sorted(name for name in a if a[name] != b[name])
        assert differing == ["car-classifier-route"], f"{change}: inputs changed for {differing}"


def test_key_rotation_regenerates_only_that_key() -> None:
    base = run_program("staging")
    for ep in ("car-classifier", "car-classifier-batch"):
        rotation = {
            **stack_config("staging")["keyRotation"],
            ep: {"primary": "2", "secondary": "1", "tokenSigning": "1"},
        }
        rotated = run_program("staging", {"keyRotation": rotation})
        a, b = _inputs_by_name(base), _inputs_by_name(rotated)
        differing = sorted(name for name in a if a[name] != b[name])
        assert differing == [f"{ep}-primary-key"]
        assert b[f"{ep}-primary-key"][1]["rotation"] == "2"


def test_two_endpoints_in_one_stack_do_not_collide(tmp_path: Path) -> None:
    other = tmp_path / "vans"
    shutil.copytree(EXAMPLE, other, ignore=shutil.ignore_patterns("samples", "train.py", "carsynth.py", "__pycache__"))
    for path in [other / "endpoint.yml", *(other / "deployments").glob("*.yml")]:
        path.write_text(path.read_text(encoding="utf-8").replace("car-classifier", "vans"), encoding="utf-8")
    # The dev stack's overrides name its batch endpoint, which this stack does not deploy: only the online ones.
    overrides = {k: v for k, v in stack_config("dev")["overrides"].items() if k == "car-classifier"}
    run = run_program("dev", {"endpoints": ["examples/car-classifier", str(other)], "overrides": overrides})
    names = [r.name for r in run.resources]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    objects = [as_object(r) for r in _k8s(run)]
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))
    assert sum(1 for k in keys if k[0] == "Deployment") == 4
    assert {"vans.scoringUri", "car-classifier.scoringUri"} <= set(run.exports)
    _assert_no_plain_secrets(run)


def test_rotation_defaults_match_key_rotation_model() -> None:
    assert KeyRotation() == KeyRotation(primary="0", secondary="0", token_signing="0")


# `pulumi preview --policy-pack policies` of every stack against a real API server: tests/cluster/test_e2e.py.


def _future(coro: Any) -> Any:
    import asyncio

    return asyncio.ensure_future(coro)


def test_endpoint_namespace_component() -> None:
    from components.endpoint_namespace import EndpointNamespace

    def program() -> Any:
        ns = EndpointNamespace("namespace", "ml-test")

        def check(values: list[Any]) -> None:
            urn, name = values
            assert name == "ml-test", f"{urn}: namespace {name!r}"

        return pulumi.Output.all(ns.urn, ns.namespace).apply(check)

    run = run_pulumi(program)
    namespace = as_object(run.named("namespace-ns"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deny = as_object(run.named("namespace-default-deny"))
    assert deny["metadata"]["namespace"] == "ml-test"
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for r in _k8s(run):
        assert validate_object(as_object(r)) == [], run.urn(r)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_program_creates_exactly_what_the_offline_plan_renders(stack: str) -> None:
    from components.builders.stack import render_stack
    from components.builders.stack_config import load_stack_config, settings_from_config

    def normalised(obj: dict[str, Any]) -> dict[str, Any]:
        def ints(v: Any) -> Any:
            if isinstance(v, float) and v.is_integer():
                return int(v)
            if isinstance(v, dict):
                return {k: ints(x) for k, x in v.items()}
            if isinstance(v, list):
                return [ints(x) for x in v]
            return v

        out = ints(obj)
        if out["kind"] == "Secret":
            out["stringData"] = {k: "[secret]" for k in out["stringData"]}
        return out

    run = run_program(stack)
    created = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): normalised(o)
        for o in (as_object(r) for r in _k8s(run))
    }
    rendered = render_stack(settings_from_config(load_stack_config(REPO_ROOT, stack)), REPO_ROOT)
    planned = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): normalised(o) for o in rendered.objects
    }
    assert created.keys() == planned.keys()
    for key, obj in planned.items():
        assert created[key] == obj, f"{key}: the program and the offline plan differ"


# ----------------------------------------------------------------------------------------------------------- batch


def test_batch_platform_component_with_pinned_images() -> None:
    from components.batch_platform import BatchPlatform, BatchPlatformArgs
    from components.builders.batch_options import BatchOptions

    quotas = {"cpu": {"cpu": "16", "memory": "64Gi"}}

    def program() -> Any:
        platform = BatchPlatform(
            "batch",
            BatchPlatformArgs("ml-test", quotas, BatchOptions(volume_size="10Gi"), job_api_image=DIGEST),
        )

        def check(values: list[Any]) -> None:
            urn, queue, api, runner = values
            assert (queue, api, runner) == ("ml-test-batch", DIGEST, ""), f"{urn}: outputs {(queue, api, runner)}"

        return pulumi.Output.all(
            platform.urn, platform.cluster_queue, platform.job_api_image, platform.runner_image
        ).apply(check)

    run = run_pulumi(program)
    assert sorted((r.typ, r.name) for r in run.resources) == [
        ("endpoints:batch_platform:BatchPlatform", "batch"),
        ("kubernetes:core/v1:PersistentVolumeClaim", "batch-data"),
        ("kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue", "batch-queue"),
        ("kubernetes:scheduling.k8s.io/v1:PriorityClass", "batch-ml-endpoints-batch"),
        ("kubernetes:scheduling.k8s.io/v1:PriorityClass", "batch-ml-endpoints-batch-low"),
    ]
    for r in _k8s(run):
        assert validate_object(as_object(r)) == [], run.urn(r)
    claim = as_object(run.named("batch-data"))
    assert (claim["metadata"]["namespace"], claim["spec"]["resources"]) == (
        "ml-test",
        {"requests": {"storage": "10Gi"}},
    )
    low = as_object(run.named("batch-ml-endpoints-batch-low"))
    assert (low["value"], low["preemptionPolicy"]) == (-100, "Never")


def test_dev_program_builds_job_api_and_runner_images_and_chains_the_runner() -> None:
    run = run_program("dev")
    images = {r.name: r.inputs for r in run.by_type("docker:index/image:Image")}
    api, runner, nightly = (
        images["batch-job-api-image"],
        images["batch-runner-image"],
        images["car-classifier-batch-nightly-image"],
    )
    batch_dockerfile = str((REPO_ROOT / "serving" / "Dockerfile.batch").resolve())
    serving = "registry.example.com/ml/endpoints-serving:0.1.0"
    assert (api["build"]["dockerfile"], api["build"]["target"], api["build"]["args"]) == (
        batch_dockerfile,
        "job-api",
        {"BASE_IMAGE": serving},
    )
    assert (runner["build"]["dockerfile"], runner["build"]["target"], runner["build"]["args"]) == (
        batch_dockerfile,
        "runner",
        {"BASE_IMAGE": serving},
    )
    # The deployment image builds on the runner image the same `pulumi up` pushed (its digest).
    runner_digest = mock_state_digest(run, "batch-runner-image")
    assert nightly["build"]["args"]["BASE_IMAGE"] == runner_digest
    assert nightly["build"]["dockerfile"] == str((REPO_ROOT / "serving" / "Dockerfile.deployment").resolve())
    api_pod = as_object(run.named("car-classifier-batch-api"))["spec"]["template"]["spec"]
    assert api_pod["containers"][0]["image"] == mock_state_digest(run, "batch-job-api-image")
    template = as_object(run.named("car-classifier-batch-nightly-template"))
    pulled = json.loads(template["data"]["nightly.json"])["spec"]["template"]["spec"]["containers"][0]["image"]
    assert pulled == mock_state_digest(run, "car-classifier-batch-nightly-image")
    _assert_no_plain_secrets(run)


def test_program_builds_a_batch_deployment_on_its_environment_image() -> None:
    """Redirects that keep Azure's curated image: the stack's program builds the serving layer on it, the runner on
    that, the deployment on the runner (each FROM the previous one's pushed digest), and no stack runner image."""
    mirror = {"mcr.microsoft.com/": "registry.internal/mcr/"}
    run = run_program("dev", {"baseImageRedirects": mirror})
    images = {r.name: r.inputs for r in run.by_type("docker:index/image:Image")}
    assert "batch-runner-image" not in images  # no batch deployment builds on the stack's runner
    layer = images["car-classifier-batch-nightly-image-base-base"]
    runner = images["car-classifier-batch-nightly-image-base"]
    nightly = images["car-classifier-batch-nightly-image"]
    assert layer["imageName"] == "registry.example.com/ml-dev/car-classifier-batch-nightly-base:pulumi"
    assert layer["build"]["dockerfile"] == str((REPO_ROOT / "serving" / "Dockerfile.custom-base").resolve())
    assert layer["build"]["args"] == {"BASE_IMAGE": "registry.internal/mcr/azureml/openmpi4.1.0-ubuntu20.04:latest"}
    assert runner["imageName"] == "registry.example.com/ml-dev/car-classifier-batch-nightly-runner:pulumi"
    assert (runner["build"]["dockerfile"], runner["build"]["target"], runner["build"]["args"]) == (
        str((REPO_ROOT / "serving" / "Dockerfile.batch").resolve()),
        "runner",
        {"BASE_IMAGE": mock_state_digest(run, "car-classifier-batch-nightly-image-base-base")},
    )
    assert nightly["build"]["args"]["BASE_IMAGE"] == mock_state_digest(run, "car-classifier-batch-nightly-image-base")
    template = as_object(run.named("car-classifier-batch-nightly-template"))
    pulled = json.loads(template["data"]["nightly.json"])["spec"]["template"]["spec"]["containers"][0]["image"]
    assert pulled == mock_state_digest(run, "car-classifier-batch-nightly-image")


def mock_state_digest(run: Run, name: str) -> str:
    """The repository digest the docker mock answered for image ``name``."""
    from pulumi_harness import mock_state

    return str(mock_state(run.named(name))["repoDigest"])
