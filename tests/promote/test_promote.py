"""Promotion between stack files: byte-for-byte round trips, traffic and mirror stages, refusals with reasons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from endpoints.app.promote import promote, round_trip_yaml
from endpoints.cli.main import build_app
from endpoints.errors import SpecError

REPO = Path(__file__).resolve().parents[2]


def _digest(c: str) -> str:
    return "sha256:" + c * 64


ALICE_OLD = f"registry.example.com/ml/car-classifier-alice@{_digest('0')}"
ALICE_NEW = f"registry.example.com/ml/car-classifier-alice@{_digest('a')}"
BOB_OLD = f"registry.example.com/ml/car-classifier-bob@{_digest('1')}"
BOB_NEW = f"registry.example.com/ml/car-classifier-bob@{_digest('b')}"
CARL = f"registry.example.com/ml/car-classifier-carl@{_digest('c')}"

DEV = """\
# dev: images are built by `pulumi up`; nothing pinned here.
config:
  ml-endpoints:namespace: ml-dev   # one namespace per stack
  ml-endpoints:domain: dev.example.com
  ml-endpoints:endpoints:
    - examples/car-classifier
  ml-endpoints:buildImages: true
  ml-endpoints:imageRegistry: registry.example.com/ml-dev
  ml-endpoints:servingImage: registry.example.com/ml/endpoints-serving:0.1.0
  ml-endpoints:overrides:
    car-classifier:
      deployments:
        alice:
          instanceCount: 1
"""

STAGING = f"""\
# staging: what passed here goes to prod.
config:
  ml-endpoints:namespace: 'ml-staging'
  ml-endpoints:domain: staging.example.com
  ml-endpoints:endpoints:
    - examples/car-classifier

  # Promotion edits the pinned keys below and nothing else.
  ml-endpoints:overrides:
    car-classifier:
      traffic:
        alice: 100   # all live traffic
        bob: 0
      mirrorTraffic:
        bob: 10
      deployments:
        alice:
          image: "{ALICE_NEW}"
          instanceCount: 2
        bob:
          image: {BOB_NEW}
          instanceCount: 2
          modelVersion: "3"
  ml-endpoints:keyRotation:
    car-classifier:
      primary: "1"
"""

PROD = f"""\
# prod: private, three instances, mandatory policies.
config:
  ml-endpoints:namespace: ml-prod
  ml-endpoints:domain: internal.example.com
  ml-endpoints:endpoints:
    - examples/car-classifier
  ml-endpoints:publicNetworkAccess: disabled   # internal gateway only
  ml-endpoints:overrides:
    car-classifier:
      traffic:
        alice: 100
        bob: 0
      deployments:
        alice:
          image: {ALICE_OLD}
          instanceCount: 3
        bob:
          # the challenger; mirrored before it takes traffic
          image: {BOB_OLD}
          instanceCount: 3
          modelPath: azureml://models/bob/2
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "examples" / "car-classifier", tmp_path / "examples" / "car-classifier")
    (tmp_path / "stacks").mkdir()
    for name, text in (("dev", DEV), ("staging", STAGING), ("prod", PROD)):
        (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def _replace_line(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_round_trip_is_byte_for_byte_apart_from_promoted_keys(project: Path) -> None:
    result = promote(project, "bob", "staging", "prod")
    expected = _replace_line(PROD, f"image: {BOB_OLD}", f"image: {BOB_NEW}")
    expected = _replace_line(expected, "modelPath: azureml://models/bob/2\n", 'modelVersion: "3"\n')
    assert result.text == expected
    assert result.changes == [
        f"ml-endpoints:overrides.car-classifier.deployments.bob.image: {BOB_OLD} -> {BOB_NEW}",
        "ml-endpoints:overrides.car-classifier.deployments.bob.modelPath: azureml://models/bob/2 -> (unset)",
        "ml-endpoints:overrides.car-classifier.deployments.bob.modelVersion: (unset) -> 3",
    ]
    assert result.notes == []


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_repository_stack_files_round_trip_unchanged(name: str) -> None:
    path = REPO / "stacks" / f"Pulumi.{name}.yaml"
    round_trip_yaml(path.read_text(encoding="utf-8"), str(path))  # raises when any style would reformat it


def test_mirror_then_traffic_in_prod(project: Path) -> None:
    pinned = _replace_line(PROD, f"image: {BOB_OLD}", f"image: {BOB_NEW}")
    pinned = _replace_line(pinned, "modelPath: azureml://models/bob/2\n", 'modelVersion: "3"\n')
    mirrored = promote(project, "bob", "staging", "prod", mirror=10)
    assert mirrored.text == pinned + "      mirrorTraffic:\n        bob: 10\n"
    assert mirrored.changes[-1] == "ml-endpoints:overrides.car-classifier.mirrorTraffic.bob: (unset) -> 10"
    (project / "stacks" / "Pulumi.prod.yaml").write_text(mirrored.text, encoding="utf-8")

    live = promote(project, "bob", "staging", "prod", traffic=25)
    assert live.changes == [
        "ml-endpoints:overrides.car-classifier.traffic.alice: 100 -> 75",
        "ml-endpoints:overrides.car-classifier.traffic.bob: 0 -> 25",
        "ml-endpoints:overrides.car-classifier.mirrorTraffic.bob: 10 -> (unset)",
    ]
    assert live.text == _replace_line(pinned, "alice: 100\n        bob: 0\n", "alice: 75\n        bob: 25\n")


def test_prod_refuses_live_traffic_before_a_mirror_stage(project: Path) -> None:
    with pytest.raises(SpecError) as e:
        promote(project, "bob", "staging", "prod", traffic=100)
    assert str(e.value) == (
        f"<spec>: {project}/stacks/Pulumi.prod.yaml: ml-endpoints:overrides.car-classifier.traffic.bob: refusing 100% "
        "of live traffic for bob in prod: prod demands a mirror stage first and bob gets no mirrored traffic there; "
        "run `endpoints promote bob --from staging --to prod --mirror 10` and compare before giving it live traffic"
    )


def test_staging_allows_live_traffic_without_mirror(project: Path) -> None:
    result = promote(project, "bob", "prod", "staging", traffic=10, image=BOB_NEW)
    assert result.changes == [
        "ml-endpoints:overrides.car-classifier.deployments.bob.modelPath: (unset) -> azureml://models/bob/2",
        "ml-endpoints:overrides.car-classifier.deployments.bob.modelVersion: 3 -> (unset)",
        "ml-endpoints:overrides.car-classifier.traffic.alice: 100 -> 90",
        "ml-endpoints:overrides.car-classifier.traffic.bob: 0 -> 10",
        "ml-endpoints:overrides.car-classifier.mirrorTraffic.bob: 10 -> (unset)",
    ]
    assert "mirrorTraffic" not in result.text  # the emptied mapping goes too


def test_mirror_to_a_live_deployment_is_refused(project: Path) -> None:
    with pytest.raises(SpecError, match="alice takes 100% of live traffic in prod; mirror only to a deployment with 0"):
        promote(project, "alice", "staging", "prod", mirror=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"mirror": 60}, "--mirror: got 60; mirror at most 50% (the mirror-limits policy)", id="mirror-60"),
        pytest.param({"traffic": 101}, "--traffic: got 101; a live traffic share is 0 to 100", id="traffic-101"),
        pytest.param(
            {"traffic": 10, "mirror": 10},
            "--traffic and --mirror: pick one; a deployment is mirrored first, then given live traffic",
            id="both",
        ),
        pytest.param(
            {"image": "registry.example.com/ml/car-classifier-bob:1.0"},
            "--image: got 'registry.example.com/ml/car-classifier-bob:1.0'; promotion moves images by digest "
            "(<registry>/<name>@sha256:<64 hex>) so the target runs exactly what was tested",
            id="image-without-digest",
        ),
    ],
)
def test_bad_arguments(project: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as e:
        promote(project, "bob", "staging", "prod", **kwargs)  # type: ignore[arg-type]
    assert e.value.problems[0].message == message


def test_source_that_builds_images_needs_an_image(project: Path) -> None:
    with pytest.raises(SpecError) as e:
        promote(project, "alice", "dev", "staging")
    assert e.value.problems[0].message == (
        f"{project}/stacks/Pulumi.dev.yaml: ml-endpoints:overrides.car-classifier.deployments.alice.image: missing; "
        "stack dev pins no image for alice (it builds images on `pulumi up`); pass --image "
        "<registry>/<name>@sha256:<digest> with the digest it built (`pulumi stack output --stack dev`)"
    )
    result = promote(project, "alice", "dev", "staging", image=ALICE_OLD)
    assert result.text == _replace_line(STAGING, f'image: "{ALICE_NEW}"', f'image: "{ALICE_OLD}"')


def test_promotion_that_breaks_a_mandatory_rule_is_refused(project: Path) -> None:
    # prod gains a deployment it has never run: the spec's instance_count of 1 breaks prod's replica floor.
    carl = (project / "examples/car-classifier/deployments/alice.yml").read_text(encoding="utf-8")
    (project / "examples/car-classifier/deployments/carl.yml").write_text(
        carl.replace("name: alice", "name: carl"), encoding="utf-8"
    )
    staging = STAGING.replace(
        '          modelVersion: "3"\n', f'          modelVersion: "3"\n        carl:\n          image: {CARL}\n'
    )
    (project / "stacks" / "Pulumi.staging.yaml").write_text(staging, encoding="utf-8")
    with pytest.raises(SpecError) as e:
        promote(project, "carl", "staging", "prod")
    assert e.value.problems[0].message == (
        f"{project}/stacks/Pulumi.prod.yaml: refusing the promotion: stack prod enforces its policies and the "
        'promotion breaks min-replicas Deployment/ml-prod/car-classifier-carl: Deployment "car-classifier-carl" '
        "runs 1 replica; set replicas (instance_count) to 3 or more"
    )
    # A stack whose policies are advisory gets the same finding as a note, and the promotion goes through.
    sandbox = PROD.replace("  ml-endpoints:namespace: ml-prod\n", "  ml-endpoints:namespace: ml-sandbox\n")
    sandbox = sandbox.replace("config:\n", "config:\n  ml-endpoints:policyEnforcement: advisory\n")
    (project / "stacks" / "Pulumi.sandbox.yaml").write_text(sandbox, encoding="utf-8")
    result = promote(project, "carl", "staging", "sandbox")
    assert result.notes == [
        'min-replicas Deployment/ml-sandbox/car-classifier-carl: Deployment "car-classifier-carl" runs 1 replica; '
        "set replicas (instance_count) to 3 or more"
    ]


def test_file_that_cannot_round_trip_is_refused(tmp_path: Path) -> None:
    text = "config:\n  a:\n      b: 1\n  c:\n   - x\n"
    with pytest.raises(SpecError, match="cannot edit this file without reformatting it"):
        round_trip_yaml(text, "odd.yaml")


def test_cli_writes_and_reports(project: Path) -> None:
    runner = CliRunner()
    dry = runner.invoke(
        build_app(), ["promote", "bob", "--from", "staging", "--to", "prod", "--project", str(project), "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines()[-1] == "dry run: nothing written"
    assert (project / "stacks" / "Pulumi.prod.yaml").read_text(encoding="utf-8") == PROD

    done = runner.invoke(
        build_app(), ["promote", "bob", "--from", "staging", "--to", "prod", "--project", str(project), "--json"]
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["written"] is True
    assert len(report["changes"]) == 3
    assert f"image: {BOB_NEW}" in (project / "stacks" / "Pulumi.prod.yaml").read_text(encoding="utf-8")

    again = runner.invoke(
        build_app(), ["promote", "bob", "--from", "staging", "--to", "prod", "--project", str(project)]
    )
    assert again.exit_code == 0
    assert again.output.strip() == f"{project}/stacks/Pulumi.prod.yaml: already up to date; nothing to promote"


def test_cli_refusal_exits_one(project: Path) -> None:
    result = CliRunner().invoke(
        build_app(),
        ["promote", "bob", "--from", "staging", "--to", "prod", "--traffic", "100", "--project", str(project)],
    )
    assert result.exit_code == 1
    assert "promote refused: " in result.output
    assert "prod demands a mirror stage first" in result.output
    assert (project / "stacks" / "Pulumi.prod.yaml").read_text(encoding="utf-8") == PROD


def test_deployment_unknown_to_the_source_stack(project: Path) -> None:
    with pytest.raises(SpecError) as e:
        promote(project, "zed", "staging", "prod")
    assert e.value.problems[0].message == (
        f"{project}/stacks/Pulumi.staging.yaml: ml-endpoints:overrides: no endpoint overrides deployment 'zed'; "
        "name it with --endpoint"
    )


def test_explicit_endpoint_and_image(project: Path) -> None:
    result = promote(project, "bob", "dev", "staging", endpoint="car-classifier", image=BOB_OLD)
    assert result.changes == [
        f"ml-endpoints:overrides.car-classifier.deployments.bob.image: {BOB_NEW} -> {BOB_OLD}",
        "ml-endpoints:overrides.car-classifier.deployments.bob.modelVersion: 3 -> (unset)",
    ]


def test_skipping_staging_is_refused(project: Path) -> None:
    with pytest.raises(SpecError) as e:
        promote(project, "bob", "dev", "prod", image=BOB_NEW)
    assert e.value.problems[0].message == (
        "--from dev --to prod: skips a stage (dev -> prod); promote to a staging stack first and from there to prod, "
        "so prod only runs what another stack has already run"
    )


def test_repository_stacks_promote(tmp_path: Path) -> None:
    """The real stack files: staging -> prod moves nothing new; a mirror stage for alice in staging is refused."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns("*.py", "__pycache__", ".venv"))
    shutil.copytree(REPO / "examples" / "car-classifier", tmp_path / "examples" / "car-classifier")
    shutil.copytree(REPO / "examples" / "car-classifier-batch", tmp_path / "examples" / "car-classifier-batch")
    same = promote(tmp_path, "alice", "staging", "prod")
    assert same.changes == []
    assert same.text == (REPO / "stacks" / "Pulumi.prod.yaml").read_text(encoding="utf-8")
    with pytest.raises(SpecError, match="alice takes 100% of live traffic in staging"):
        promote(tmp_path, "alice", "prod", "staging", mirror=10)


def test_new_deployment_can_enter_prod_through_a_mirror(project: Path) -> None:
    """A deployment prod has never run: the mirror stage pins its image; prod's own instance count is then needed."""
    carl = (project / "examples/car-classifier/deployments/alice.yml").read_text(encoding="utf-8")
    (project / "examples/car-classifier/deployments/carl.yml").write_text(
        carl.replace("name: alice", "name: carl").replace("instance_count: 1", "instance_count: 3"), encoding="utf-8"
    )
    staging = STAGING.replace(
        '          modelVersion: "3"\n', f'          modelVersion: "3"\n        carl:\n          image: {CARL}\n'
    )
    (project / "stacks" / "Pulumi.staging.yaml").write_text(staging, encoding="utf-8")
    result = promote(project, "carl", "staging", "prod", mirror=5)
    assert result.changes == [
        f"ml-endpoints:overrides.car-classifier.deployments.carl.image: (unset) -> {CARL}",
        "ml-endpoints:overrides.car-classifier.mirrorTraffic.carl: (unset) -> 5",
    ]
    assert result.text == PROD + f"        carl:\n          image: {CARL}\n      mirrorTraffic:\n        carl: 5\n"


def test_unknown_endpoint_is_refused_with_the_known_names(project: Path) -> None:
    """Issue 13 item 15: ``promote --endpoint nope`` used to write ``overrides.nope`` into the target stack."""
    with pytest.raises(SpecError) as e:
        promote(project, "bob", "dev", "staging", endpoint="nope", image=BOB_OLD)
    assert e.value.problems[0].message == (
        "--endpoint: got 'nope'; stack staging has no such endpoint; known: ['car-classifier']"
    )
    assert (project / "stacks" / "Pulumi.staging.yaml").read_text(encoding="utf-8") == STAGING


def test_cli_refuses_an_unknown_endpoint_and_writes_nothing(project: Path) -> None:
    result = CliRunner().invoke(
        build_app(),
        [
            "promote",
            "bob",
            "--from",
            "dev",
            "--to",
            "staging",
            "--endpoint",
            "nope",
            "--image",
            BOB_OLD,
            "--project",
            str(project),
        ],
    )
    assert result.exit_code == 1, result.output
    assert " ".join(result.output.split()) == (
        "promote refused: --endpoint: got 'nope'; stack staging has no such endpoint; known: ['car-classifier']"
    )
    assert (project / "stacks" / "Pulumi.staging.yaml").read_text(encoding="utf-8") == STAGING


def test_unknown_deployment_of_a_named_endpoint_is_refused(project: Path) -> None:
    with pytest.raises(SpecError) as e:
        promote(project, "zed", "dev", "staging", endpoint="car-classifier", image=BOB_OLD)
    assert e.value.problems[0].message == (
        "zed: endpoint 'car-classifier' of stack staging has no such deployment; known: ['alice', 'bob']"
    )
