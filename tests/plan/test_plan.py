"""The offline plan: the example endpoint rendered per stack, validated, policy-checked, written, diffed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from endpoints.app.plan import diff_plans, plan_stack, redact_secrets
from endpoints.cli.main import build_app

REPO = Path(__file__).resolve().parents[2]
ALICE = "registry.example.com/ml/car-classifier-alice@sha256:" + "1" * 64
BOB = "registry.example.com/ml/car-classifier-bob@sha256:" + "2" * 64

PROD = f"""\
config:
  ml-endpoints:namespace: ml-prod
  ml-endpoints:domain: ml.example.com
  ml-endpoints:publicNetworkAccess: disabled
  ml-endpoints:overrides:
    car-classifier:
      deployments:
        alice:
          image: {ALICE}
          instanceCount: 3
        bob:
          image: {BOB}
          instanceCount: 3
"""
DEV = f"""\
config:
  ml-endpoints:namespace: ml-dev
  ml-endpoints:domain: dev.example.com
  ml-endpoints:overrides:
    car-classifier:
      deployments:
        alice:
          image: {ALICE}
          instanceCount: 1
        bob:
          image: registry.example.com/ml/car-classifier-bob:0.3.0
          instanceCount: 2
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "examples" / "car-classifier", root / "examples" / "car-classifier")
    (root / "stacks").mkdir()
    (root / "stacks" / "Pulumi.prod.yaml").write_text(PROD, encoding="utf-8")
    (root / "stacks" / "Pulumi.dev.yaml").write_text(DEV, encoding="utf-8")
    # prod with the endpoint left public and two replicas: breaks two mandatory rules.
    bad = PROD.replace("  ml-endpoints:publicNetworkAccess: disabled\n", "").replace(
        "instanceCount: 3", "instanceCount: 2"
    )
    (root / "stacks" / "Pulumi.prod-bad.yaml").write_text(
        bad.replace("config:\n", "config:\n  ml-endpoints:domain: ml.example.com\n", 0), encoding="utf-8"
    )
    return root


def test_prod_plan_validates_and_passes(project: Path) -> None:
    plan = plan_stack(project, "prod")
    assert (plan.environment, plan.level) == ("prod", "mandatory")
    assert plan.objects_by_kind() == {
        "Deployment": 2,
        "HTTPRoute": 1,
        "Namespace": 1,
        "NetworkPolicy": 2,
        "PodDisruptionBudget": 2,
        "Secret": 1,
        "Service": 2,
    }
    assert plan.schema_problems == []
    assert plan.violations == []
    assert not plan.blocked
    assert plan.scoring_uris == {"car-classifier": "https://car-classifier.ml.example.com/score"}


def test_secrets_are_placeholders(project: Path) -> None:
    plan = plan_stack(project, "prod")
    secrets = [o for o in plan.objects if o["kind"] == "Secret"]
    assert [s["stringData"] for s in secrets] == [
        {
            "primary": "<secret:primary>",
            "secondary": "<secret:secondary>",
            "token-signing-key": "<secret:token-signing-key>",
        }
    ]


def test_redact_secrets_replaces_real_values() -> None:
    obj = {"kind": "Secret", "data": {"primary": "c2VjcmV0"}, "stringData": {"a": "<secret:a>", "b": "hunter2"}}
    assert redact_secrets(obj) == {
        "kind": "Secret",
        "data": {"primary": "<secret:primary>"},
        "stringData": {"a": "<secret:a>", "b": "<secret:b>"},
    }


def test_dev_plan_reports_advisory_violations(project: Path) -> None:
    plan = plan_stack(project, "dev")
    assert plan.violations_by_level() == {"mandatory": 0, "advisory": 1}
    assert [(v.policy, v.ref(), v.message) for v in plan.violations] == [
        (
            "min-replicas",
            "Deployment/ml-dev/car-classifier-alice",
            'Deployment "car-classifier-alice" runs 1 replica; set replicas (instance_count) to 2 or more',
        )
    ]
    assert not plan.blocked


def test_diff_from_dev(project: Path) -> None:
    diff = diff_plans(plan_stack(project, "prod"), plan_stack(project, "dev"))
    assert diff.added == ["Namespace/ml-prod"]
    assert diff.removed == ["Namespace/ml-dev"]
    assert diff.changed["Deployment/car-classifier-alice"] == ["spec.replicas: 1 -> 3"]
    assert diff.changed["HTTPRoute/car-classifier"] == [
        'spec.hostnames[0]: "car-classifier.dev.example.com" -> "car-classifier.ml.example.com"',
        'spec.parentRefs[0].name: "public" -> "private"',
    ]
    assert diff.changed["Deployment/car-classifier-bob"] == [
        "spec.replicas: 2 -> 3",
        f'spec.template.spec.containers[0].image: "registry.example.com/ml/car-classifier-bob:0.3.0" -> "{BOB}"',
    ]


def test_cli_writes_manifests_and_exits_zero(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    (out).mkdir()
    (out / "999-stale-old.yaml").write_text("kind: Old\n", encoding="utf-8")
    result = CliRunner().invoke(
        build_app(), ["plan", "--stack", "prod", "--project", str(project), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["violationsByLevel"] == {"mandatory": 0, "advisory": 0}
    assert report["blocked"] is False
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "000-namespace-ml-prod.yaml"
    assert "999-stale-old.yaml" not in files
    assert len(files) == 12  # 11 objects + plan.json
    deployment = yaml.safe_load((out / "005-deployment-car-classifier-alice.yaml").read_text(encoding="utf-8"))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == ALICE
    assert json.loads((out / "plan.json").read_text(encoding="utf-8"))["objects"] == 11


def test_cli_exits_one_on_mandatory_violation(project: Path) -> None:
    result = CliRunner().invoke(build_app(), ["plan", "--stack", "prod-bad", "--project", str(project)])
    assert result.exit_code == 1, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert "violations: mandatory 3, advisory 0" in lines
    assert (
        '[mandatory] min-replicas Deployment/ml-prod/car-classifier-alice: Deployment "car-classifier-alice" runs '
        "2 replicas; set replicas (instance_count) to 3 or more" in lines
    )
    assert (
        '[mandatory] prod-endpoint-private HTTPRoute/ml-prod/car-classifier: HTTPRoute "car-classifier" attaches to '
        'public Gateway "public"; prod endpoints must be private: set public_network_access: disabled so the route '
        'attaches to Gateway "gateway-system/private"' in lines
    )
    assert lines[-1] == "result: BLOCKED"


def test_cli_unknown_stack(project: Path) -> None:
    result = CliRunner().invoke(build_app(), ["plan", "--stack", "qa", "--project", str(project)])
    assert result.exit_code == 1
    assert f"{project}/stacks/Pulumi.qa.yaml: no such stack file; stacks: ['dev', 'prod', 'prod-bad']" in result.output


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        pytest.param(
            "    car-classifier:\n",
            "    car-clasifier:\n",
            "ml-endpoints:overrides.car-clasifier: no such endpoint in this stack; known: ['car-classifier']",
            id="endpoint",
        ),
        pytest.param(
            "        bob:\n",
            "        bobb:\n",
            "ml-endpoints:overrides.car-classifier.deployments.bobb: no such deployment; known: ['alice', 'bob']",
            id="deployment",
        ),
    ],
)
def test_cli_refuses_an_override_naming_an_unknown_endpoint_or_deployment(
    tmp_path: Path, old: str, new: str, error: str
) -> None:
    """Issue 13 item 15, through the real CLI: a typo under ``ml-endpoints:overrides`` is refused with the known names
    (an endpoint typo used to surface as the real endpoint's missing image, the override it was meant to set)."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "examples" / "car-classifier", tmp_path / "examples" / "car-classifier")
    (tmp_path / "stacks").mkdir()
    assert DEV.count(old) == 1
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(DEV.replace(old, new), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", "plan", "--stack", "dev", "--project", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (result.returncode, result.stderr.strip()) == (1, error), result.stdout


STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))


def test_the_repository_has_stack_files() -> None:
    assert [p.name for p in STACK_FILES] == ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"]


@pytest.mark.parametrize("stack", [p.name.split(".")[1] for p in STACK_FILES])
def test_repository_stacks_validate_with_no_mandatory_violation(stack: str) -> None:
    plan = plan_stack(REPO, stack)
    assert plan.schema_problems == []
    assert plan.violations_by_level()["mandatory"] == 0, [v.message for v in plan.violations]


def test_parallel_validation_matches_serial_and_keeps_order(project: Path) -> None:
    from components.k8s_schema import validate_object
    from endpoints.app.plan import _PARALLEL_MIN_OBJECTS, _workers, validate_all

    objects = plan_stack(project, "prod").objects
    many = [json.loads(json.dumps(o)) for _ in range(_PARALLEL_MIN_OBJECTS // len(objects) + 1) for o in objects]
    many[3]["spec"]["bogus"] = 1
    many[-1]["spec"]["replicas"] = "three"
    problems = validate_all(many)
    serial = [msg for o in many for msg in validate_object(o)]
    assert [p.message for p in problems] == serial
    assert serial == [
        "HTTPRoute/car-classifier: spec: Additional properties are not allowed ('bogus' was unexpected)",
        "PodDisruptionBudget/car-classifier-bob: spec: Additional properties are not allowed ('replicas' was "
        "unexpected)",
    ]
    assert _workers(len(many)) == min(len(os.sched_getaffinity(0)), 4)


def test_cli_json_with_diff(project: Path) -> None:
    result = CliRunner().invoke(
        build_app(), ["plan", "--stack", "prod", "--diff-from", "dev", "--project", str(project), "--json"]
    )
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)["diff"]
    assert diff["base"] == "dev"
    assert (diff["added"], diff["removed"]) == (["Namespace/ml-prod"], ["Namespace/ml-dev"])
    assert diff["changed"]["Deployment/car-classifier-alice"] == ["spec.replicas: 1 -> 3"]
