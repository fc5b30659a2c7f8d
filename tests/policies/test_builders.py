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


@pytest.mark.skipif(not BATCH_PROJECT.is_dir(), reason="the batch fixture project is not in this checkout")
@pytest.mark.parametrize("instance_type", ["Standard_DS3_v2", "Standard_NC4as_T4_v3"])
def test_batch_objects_pass_the_pod_rules(instance_type: str) -> None:
    from components.builders import batch
    from components.builders.common import ClusterSettings
    from endpoints.project import load_endpoint_project

    project = load_endpoint_project(BATCH_PROJECT)
    settings = ClusterSettings()
    objects: list[dict] = [batch.build_keys_secret(project.endpoint, settings)]
    for spec in project.deployments.values():
        template = batch.build_job_template(
            project.endpoint, spec, project.catalog.get(instance_type), settings, f"registry.example.com/run{DIGEST}"
        )
        objects += [template, batch.build_template_config_map(project.endpoint, spec, template, settings)]
    objects += batch.build_job_api_objects(
        project.endpoint, list(project.deployments), settings, f"registry.example.com/serving{DIGEST}"
    )
    assert {o["kind"] for o in objects} >= {"Job", "Deployment", "ConfigMap", "Secret"}
    found = [(v.policy, v.ref(), v.message) for v in check_objects(objects, Context(environment="prod"))]
    assert [f for f in found if f[0] in POD_RULES] == []
