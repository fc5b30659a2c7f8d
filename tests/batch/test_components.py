"""BatchEndpoint and BatchDeployment under Pulumi's mocks: what the engine would receive, schema-validated."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pulumi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "components"))

from pulumi_harness import SECRET_SENTINEL, as_object, mock_password, plain_strings, run_pulumi
from test_kubernetes import IMAGE, SETTINGS, cpu, deployment, endpoint

from components.batch_deployment import BatchDeployment, BatchDeploymentArgs
from components.batch_endpoint import BatchEndpoint, BatchEndpointArgs
from components.k8s_schema import validate_object
from endpoints.images import ImageBuild


def test_batch_endpoint_component():
    ep = endpoint(defaults={"deployment_name": "alice"})
    created: dict[str, BatchEndpoint] = {}

    def program() -> Any:
        comp = BatchEndpoint("cars-batch", BatchEndpointArgs(ep, ["alice"], SETTINGS, IMAGE))
        created["c"] = comp

        def check(values: list[Any]) -> None:
            urn, uri, primary, secret_name, service = values
            assert uri == "https://cars-batch.endpoints.example.com/jobs", f"{urn}: jobs_uri {uri!r}"
            assert primary == mock_password("cars-batch-primary-key"), f"{urn}: primary_key"
            assert secret_name == "cars-batch-keys", f"{urn}: secret_name {secret_name!r}"
            assert service == "cars-batch-jobs", f"{urn}: service_name {service!r}"

        async def flags() -> list[bool]:
            return [await comp.primary_key.is_secret(), await comp.secondary_key.is_secret()]

        def check_secret(values: list[bool]) -> None:
            assert values == [True, True], f"cars-batch: keys must be secret outputs, got {values}"

        return pulumi.Output.all(
            pulumi.Output.all(comp.urn, comp.jobs_uri, comp.primary_key, comp.secret_name, comp.service_name).apply(
                check
            ),
            pulumi.Output.from_input(asyncio.ensure_future(flags())).apply(check_secret),
        )

    run = run_pulumi(program)
    assert sorted((r.typ, r.name) for r in run.resources) == sorted(
        [
            ("endpoints:batch_endpoint:BatchEndpoint", "cars-batch"),
            ("pulumi-python:dynamic:Resource", "cars-batch-primary-key"),
            ("pulumi-python:dynamic:Resource", "cars-batch-secondary-key"),
            ("pulumi-python:dynamic:Resource", "cars-batch-signing-key"),
            ("kubernetes:core/v1:Secret", "cars-batch-keys"),
            ("kubernetes:core/v1:ServiceAccount", "cars-batch-sa"),
            ("kubernetes:rbac.authorization.k8s.io/v1:Role", "cars-batch-role"),
            ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "cars-batch-rolebinding"),
            ("kubernetes:apps/v1:Deployment", "cars-batch-api"),
            ("kubernetes:core/v1:Service", "cars-batch-svc"),
            ("kubernetes:policy/v1:PodDisruptionBudget", "cars-batch-pdb"),
            ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "cars-batch-ingress"),
            ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "cars-batch-api-egress"),
            ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "cars-batch-runner-egress"),
            ("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "cars-batch-route"),
            ("kubernetes:core/v1:PersistentVolumeClaim", "cars-batch-data"),
            ("kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue", "cars-batch-queue"),
        ]
    )
    for r in run.resources:
        if r.typ.startswith("kubernetes:"):
            assert validate_object(as_object(r)) == [], run.urn(r)
        assert not [s for s in plain_strings(r.inputs) if SECRET_SENTINEL in s], f"{run.urn(r)}: key in plain text"
    assert as_object(run.named("cars-batch-keys"))["stringData"] == {
        "primary": "[secret]",
        "secondary": "[secret]",
        "token-signing-key": "[secret]",
    }
    claim = as_object(run.named("cars-batch-data"))
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "100Gi"}}}
    role = as_object(run.named("cars-batch-role"))
    assert role["rules"][0]["resources"] == ["jobs"]
    assert role["metadata"]["namespace"] == "ml"


def test_batch_deployment_component_with_pinned_image():
    ep = endpoint()
    dep = deployment(tags={"priority": "low"})

    def program() -> Any:
        comp = BatchDeployment("cars-batch-alice", BatchDeploymentArgs(ep, dep, cpu(), SETTINGS, image=IMAGE))

        def check(values: list[Any]) -> None:
            urn, image, template, cm, queue, priority = values
            assert image == IMAGE, f"{urn}: image {image!r}"
            assert template == "cars-batch-alice-batch", f"{urn}: template_name {template!r}"
            assert cm == "cars-batch-alice-batch-template", f"{urn}: config_map_name {cm!r}"
            assert (queue, priority) == ("cars-batch-batch", "low"), f"{urn}: queue/priority {(queue, priority)}"

        return pulumi.Output.all(
            comp.urn, comp.image, comp.template_name, comp.config_map_name, comp.queue_name, comp.priority
        ).apply(check)

    run = run_pulumi(program)
    assert sorted((r.typ, r.name) for r in run.resources) == [
        ("endpoints:batch_deployment:BatchDeployment", "cars-batch-alice"),
        ("kubernetes:core/v1:ConfigMap", "cars-batch-alice-template"),
    ]
    cm = as_object(run.named("cars-batch-alice-template"))
    assert validate_object(cm) == []
    template = json.loads(cm["data"]["alice.json"])
    assert validate_object(template) == []
    assert template["spec"]["completionMode"] == "Indexed"
    assert template["spec"]["template"]["spec"]["priorityClassName"] == "ml-endpoints-batch-low"
    assert template["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_batch_deployment_component_builds_its_image():
    ep = endpoint()
    dep = deployment()
    build = ImageBuild(
        context=Path("/project"),
        dockerfile=Path("/repo/serving/Dockerfile.batch"),
        args={"BASE_IMAGE": "base"},
        repository="registry.example.com/ml/cars-batch-alice",
    )

    def program() -> Any:
        BatchDeployment("cars-batch-alice", BatchDeploymentArgs(ep, dep, cpu(), SETTINGS, build=build))

    run = run_pulumi(program)
    image = run.named("cars-batch-alice-image")
    assert image.typ == "docker:index/image:Image"
    assert image.inputs["imageName"] == "registry.example.com/ml/cars-batch-alice:pulumi"
    cm = as_object(run.named("cars-batch-alice-template"))
    template = json.loads(cm["data"]["alice.json"])
    pulled = template["spec"]["template"]["spec"]["containers"][0]["image"]
    assert pulled.startswith("registry.example.com/ml/cars-batch-alice@sha256:"), pulled
    assert validate_object(template) == []
