"""The policy rules against what the builders really render (batch here; online through the stacks in tests/plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.rules import check_objects
from policies.rules.common import Context

REPO = Path(__file__).resolve().parents[2]
BATCH_PROJECT = REPO / "tests" / "batch" / "fixtures" / "project"
DIGEST = "@sha256:" + "a" * 64
# Rules every pod the project renders must pass whatever it is for.
POD_RULES = {
    "run-as-non-root",
    "read-only-root-filesystem",
    "drop-all-capabilities",
    "seccomp-runtime-default",
    "no-privilege-escalation",
    "no-host-access",
    "container-resources",
    "pinned-images",
    "auth-enabled",
    "gpu-on-gpu-pool",
    "keys-not-in-plain-config",
}


@pytest.mark.parametrize("instance_type", ["Standard_DS3_v2", "Standard_NC4as_T4_v3"])
def test_batch_objects_pass_the_pod_rules(instance_type: str) -> None:
    from components.builders.batch_job import build_job_template, build_template_config_map
    from components.builders.batch_job_api import build_job_api_objects
    from components.builders.common import ClusterSettings
    from components.builders.keys import build_keys_secret
    from endpoints.project import load_endpoint_project

    project = load_endpoint_project(BATCH_PROJECT)
    settings = ClusterSettings()
    objects: list[dict] = [build_keys_secret(project.endpoint, settings)]
    for spec in project.deployments.values():
        template = build_job_template(
            project.endpoint, spec, project.catalog.get(instance_type), settings, f"registry.example.com/run{DIGEST}"
        )
        objects += [template, build_template_config_map(project.endpoint, spec, template, settings)]
    objects += build_job_api_objects(
        project.endpoint, list(project.deployments), settings, f"registry.example.com/serving{DIGEST}"
    )
    assert {o["kind"] for o in objects} >= {"Job", "Deployment", "ConfigMap", "Secret"}
    found = [(v.policy, v.ref(), v.message) for v in check_objects(objects, Context(environment="prod"))]
    assert [f for f in found if f[0] in POD_RULES] == []


@pytest.mark.parametrize("kind", ["custom-container", "triton"])
def test_custom_container_and_triton_pods_are_policy_clean(kind: str) -> None:
    # Images pinned by digest as a prod stack pins them (tritonImage, environment.image); every rule, not only pods.
    from components.builders.common import ClusterSettings
    from components.builders.namespace import build_default_deny
    from components.builders.online import build_deployment_objects, build_endpoint_objects
    from endpoints.catalog import InstanceCatalog
    from endpoints.specs import OnlineDeployment, OnlineEndpoint

    routes = {
        "liveness_route": {"port": 8080, "path": "/alive"},
        "readiness_route": {"port": 8080, "path": "/ok"},
        "scoring_route": {"port": 8080, "path": "/predict"},
    }
    doc: dict = {"name": "blue", "endpoint_name": "cars", "instance_type": "Standard_NC4as_T4_v3", "instance_count": 3}
    if kind == "triton":
        doc["model"] = {"path": "s3://models/triton", "type": "triton_model"}
    else:
        doc["environment"] = {"image": f"registry.example.com/my-server{DIGEST}", "inference_config": routes}
    catalog = InstanceCatalog.default()
    dep = OnlineDeployment.model_validate(doc, context={"catalog": catalog})
    ep = OnlineEndpoint.model_validate({"name": "cars", "traffic": {"blue": 100}, "public_network_access": "disabled"})
    settings = ClusterSettings(namespace="ml-prod", triton_image=f"registry.example.com/tritonserver{DIGEST}")
    objects = [build_default_deny("ml-prod"), *build_endpoint_objects(ep, [dep], settings)]
    objects += build_deployment_objects(
        ep, dep, catalog.get(dep.effective_instance_type), settings, f"registry.example.com/serving{DIGEST}"
    )
    found = [(v.policy, v.ref(), v.message) for v in check_objects(objects, Context(environment="prod"))]
    assert found == []
