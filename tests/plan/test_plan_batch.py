"""The offline plan of the repository's stacks with their batch endpoint: rendered, validated, policy-checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from endpoints.app.plan import diff_plans, plan_stack
from endpoints.cli.main import build_app

REPO = Path(__file__).resolve().parents[2]
BATCH_KINDS = {
    "ClusterQueue": 1,
    "ConfigMap": 1,
    "LocalQueue": 1,
    "PersistentVolumeClaim": 1,
    "PriorityClass": 2,
    "ResourceFlavor": 1,
    "Role": 1,
    "RoleBinding": 1,
    "ServiceAccount": 1,
}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_stack_plans_hold_the_batch_objects_and_pass(stack: str) -> None:
    plan = plan_stack(REPO, stack)
    kinds = plan.objects_by_kind()
    assert {k: kinds.get(k) for k in BATCH_KINDS} == BATCH_KINDS
    # online 2 + the job API
    assert (kinds["Deployment"], kinds["PodDisruptionBudget"], kinds["HTTPRoute"], kinds["Secret"]) == (3, 3, 2, 2)
    assert plan.schema_problems == []
    assert plan.violations_by_level()["mandatory"] == 0
    # The job API is never a violation (replicas, PDB, probes, pod security, pinned image in prod).
    assert [v.message for v in plan.violations if "batch" in v.ref()] == []
    domain = {
        "dev": "dev.endpoints.example.com",
        "staging": "staging.endpoints.example.com",
        "prod": "endpoints.internal.example.com",
    }[stack]
    assert plan.jobs_uris == {"car-classifier-batch": f"https://car-classifier-batch.{domain}/jobs"}
    secret = next(
        o for o in plan.objects if o["kind"] == "Secret" and o["metadata"]["name"] == "car-classifier-batch-keys"
    )
    assert secret["stringData"] == {
        "primary": "<secret:primary>",
        "secondary": "<secret:secondary>",
        "token-signing-key": "<secret:token-signing-key>",
    }


def test_prod_differs_from_staging_in_batch_replicas_and_quota() -> None:
    diff = diff_plans(plan_stack(REPO, "prod", check=False), plan_stack(REPO, "staging", check=False))
    assert "ClusterQueue/ml-prod-batch" in diff.added and "ClusterQueue/ml-staging-batch" in diff.removed
    api = diff.changed["Deployment/car-classifier-batch-jobs"]
    assert "spec.replicas: 2 -> 3" in api
    assert any(line.startswith("spec.template.metadata.annotations.ml-endpoints.io/templates-hash: ") for line in api)
    assert diff.changed["HTTPRoute/car-classifier-batch"] == [
        'spec.hostnames[0]: "car-classifier-batch.staging.endpoints.example.com" -> '
        '"car-classifier-batch.endpoints.internal.example.com"',
        'spec.parentRefs[0].name: "public" -> "internal"',
    ]


def test_cli_writes_the_batch_manifests(tmp_path: Path) -> None:
    out = tmp_path / "prod"
    result = CliRunner().invoke(
        build_app(), ["plan", "--stack", "prod", "--project", str(REPO), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["violationsByLevel"] == {"mandatory": 0, "advisory": 0}
    assert report["jobsUris"] == {
        "car-classifier-batch": "https://car-classifier-batch.endpoints.internal.example.com/jobs"
    }
    [cm_file] = out.glob("*-configmap-car-classifier-batch-nightly-batch-template.yaml")
    template = json.loads(yaml.safe_load(cm_file.read_text(encoding="utf-8"))["data"]["nightly.json"])
    assert template["kind"] == "Job" and template["spec"]["completionMode"] == "Indexed"
    [api_file] = out.glob("*-deployment-car-classifier-batch-jobs.yaml")
    api = yaml.safe_load(api_file.read_text(encoding="utf-8"))
    assert api["spec"]["replicas"] == 3
    assert api["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "registry.example.com/ml/endpoints-batch-job-api@sha256:"
    )
    text = "".join(p.read_text(encoding="utf-8") for p in out.iterdir())
    assert "&id" not in text  # no YAML anchors: each manifest reads on its own


def test_secret_in_batch_environment_variables_is_the_same_violation_as_online(tmp_path: Path) -> None:
    """Issue 13 item 9: a batch deployment's secrets passed prod (in the template's ENDPOINTS_BATCH_SETTINGS)."""
    import shutil

    for name in ("stacks", "examples/car-classifier", "examples/car-classifier-batch"):
        shutil.copytree(
            REPO / name, tmp_path / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".venv")
        )
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    online = tmp_path / "examples/car-classifier/deployments/alice.yml"
    online.write_text(online.read_text().replace('WORKER_COUNT: "1"', 'WORKER_COUNT: "1"\n  API_TOKEN: s3cr3t'))
    batch = tmp_path / "examples/car-classifier-batch/deployments/nightly.yml"
    batch.write_text(batch.read_text() + "environment_variables:\n  API_TOKEN: s3cr3t\n  BATCH_LABEL: nightly\n")
    plan = plan_stack(tmp_path, "prod")
    found = sorted((v.policy, v.ref(), v.message) for v in plan.violations if v.policy == "keys-not-in-plain-config")
    assert found == [
        (
            "keys-not-in-plain-config",
            "Deployment/ml-prod/car-classifier-alice",
            'container "scorer" sets API_TOKEN as a plain value; load it from a Secret (valueFrom.secretKeyRef or a '
            "mounted file)",
        ),
        (
            "keys-not-in-plain-config",
            "Job/ml-prod/car-classifier-batch-nightly-batch",
            'container "runner" sets API_TOKEN as a plain value; load it from a Secret (valueFrom.secretKeyRef or a '
            "mounted file)",
        ),
    ]
    assert plan.level == "mandatory" and plan.blocked
