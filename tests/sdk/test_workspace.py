"""Workspace over the repository's real stack files; the Automation API's Stack is a stand-in here.

The Pulumi CLI is not on this machine, so ``pulumi.automation.select_stack`` cannot run: these tests hand the
Workspace a recording stand-in with the Automation API's own result types (``OutputValue``, ``Deployment``,
``CommandError``) and check what the Workspace reads from it and asks of it, and what it writes into the stack
file (real files, real policy checks). The same calls against the real engine and the throwaway API server are
in test_workspace_cluster.py (marker ``cluster``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pulumi import automation as auto

from endpoints.sdk import EndpointError, Workspace
from endpoints.sdk.workspace import DEPLOYMENT_LABEL, ENDPOINT_LABEL, selector

REPO = Path(__file__).resolve().parents[2]
ALICE_IMAGE = "registry.example.com/ml-dev/car-classifier-alice@sha256:" + "a" * 64


class StandInStack:
    """Records preview/up calls; answers outputs and export_stack like the Automation API's Stack."""

    def __init__(self, refuse_preview: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse_preview = refuse_preview
        self.values = {
            "car-classifier.scoringUri": auto.OutputValue(
                "https://car-classifier.dev.endpoints.example.com/score", False
            ),
            "car-classifier.swaggerUri": auto.OutputValue(
                "https://car-classifier.dev.endpoints.example.com/swagger.json", False
            ),
            "car-classifier.primaryKey": auto.OutputValue("p" * 48, True),
            "car-classifier.secondaryKey": auto.OutputValue("s" * 48, True),
            "car-classifier-batch.jobsUri": auto.OutputValue(
                "https://car-classifier-batch.dev.endpoints.example.com/jobs", False
            ),
        }

    def outputs(self) -> dict[str, auto.OutputValue]:
        return dict(self.values)

    def export_stack(self) -> auto.Deployment:
        deployment = {
            "metadata": {
                "name": "car-classifier-alice",
                "labels": {ENDPOINT_LABEL: "car-classifier", DEPLOYMENT_LABEL: "alice"},
            },
            "spec": {"template": {"spec": {"containers": [{"name": "scorer", "image": ALICE_IMAGE}]}}},
        }
        resources = [
            {"type": "kubernetes:apps/v1:Deployment", "urn": "urn:x", "outputs": deployment},
            {"type": "random:index/randomPassword:RandomPassword", "urn": "urn:y", "outputs": {}},
        ]
        return auto.Deployment(version=3, deployment={"resources": resources})

    def preview(self, **kwargs: Any) -> Any:
        self.calls.append(("preview", kwargs))
        if self.refuse_preview:
            raise auto.CommandError(
                auto.CommandResult(stdout="", stderr="error: preflight failed\nmirror-limits: too much", code=255)
            )
        return SimpleNamespace(change_summary={"same": 40, "update": 1})

    def up(self, **kwargs: Any) -> Any:
        self.calls.append(("up", kwargs))
        self.values["car-classifier.primaryKey"] = auto.OutputValue("n" * 48, True)
        return SimpleNamespace(summary=SimpleNamespace(result="succeeded", resource_changes={"update": 1}))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns("*.py", "__pycache__", ".venv"))
    for name in ("car-classifier", "car-classifier-batch"):
        shutil.copytree(REPO / "examples" / name, tmp_path / "examples" / name)
    return tmp_path


def _workspace(project: Path, stack: StandInStack, name: str = "dev") -> Workspace:
    return Workspace(name, project, stack_factory=lambda _ws: stack)


def test_endpoints_show_credentials(project: Path) -> None:
    ws = _workspace(project, StandInStack())
    assert ws.endpoints() == [
        {
            "name": "car-classifier",
            "kind": "online",
            "scoring_uri": "https://car-classifier.dev.endpoints.example.com/score",
            "swagger_uri": "https://car-classifier.dev.endpoints.example.com/swagger.json",
        },
        {
            "name": "car-classifier-batch",
            "kind": "batch",
            "jobs_uri": "https://car-classifier-batch.dev.endpoints.example.com/jobs",
        },
    ]
    shown = ws.show("car-classifier")
    assert shown["traffic"] == {"alice": 90, "bob": 10} and shown["mirror_traffic"] == {}
    assert shown["deployments"]["alice"] == {"traffic": 90, "mirror": 0, "instance_count": 1, "image": ALICE_IMAGE}
    assert shown["deployments"]["bob"]["image"] is None  # dev builds it; not in the state yet
    batch = ws.show("car-classifier-batch")
    assert (batch["kind"], batch["default_deployment"], list(batch["deployments"])) == ("batch", "nightly", ["nightly"])
    assert "traffic" not in batch
    assert ws.credentials("car-classifier") == {"primaryKey": "p" * 48, "secondaryKey": "s" * 48}
    with pytest.raises(EndpointError) as e:
        ws.show("nope")
    assert str(e.value) == (
        f"{project / 'stacks' / 'Pulumi.dev.yaml'}: stack dev has no endpoint 'nope' "
        "(endpoints: car-classifier, car-classifier-batch)"
    )
    with pytest.raises(EndpointError) as e:
        Workspace("nope", project)
    assert (
        str(e.value)
        == f"{project / 'stacks' / 'Pulumi.nope.yaml'}: no such stack file; stacks: ['dev', 'prod', 'staging']"
    )


def test_set_traffic_edits_the_stack_file_then_previews_with_the_policy_pack_and_ups(project: Path) -> None:
    stack = StandInStack()
    ws = _workspace(project, stack)
    report = ws.set_traffic("car-classifier", {"alice": 60, "bob": 40})
    assert report["changes"] == [
        "ml-endpoints:overrides.car-classifier.traffic.alice: 90 -> 60",
        "ml-endpoints:overrides.car-classifier.traffic.bob: 10 -> 40",
    ]
    assert report["written"] is True and report["up"] == {"result": "succeeded", "resource_changes": {"update": 1}}
    assert [name for name, _ in stack.calls] == ["preview", "up"]
    assert all(kw["policy_packs"] == [str(project / "policies")] for _, kw in stack.calls)
    text = (project / "stacks" / "Pulumi.dev.yaml").read_text()
    assert "        alice: 60\n        bob: 40\n" in text
    assert (
        text.replace("alice: 60", "alice: 90").replace("bob: 40", "bob: 10")
        == (REPO / "stacks" / "Pulumi.dev.yaml").read_text()
    )  # nothing else of the file changed


def test_refused_preview_puts_the_file_back(project: Path) -> None:
    before = (project / "stacks" / "Pulumi.dev.yaml").read_text()
    stack = StandInStack(refuse_preview=True)
    with pytest.raises(EndpointError) as e:
        _workspace(project, stack).set_traffic("car-classifier", {"alice": 100, "bob": 0}, mirror={"bob": 20})
    assert str(e.value).startswith(
        f"stack dev: preview refused the change; {project / 'stacks' / 'Pulumi.dev.yaml'} is unchanged: "
    )
    assert "mirror-limits: too much" in str(e.value)
    assert (project / "stacks" / "Pulumi.dev.yaml").read_text() == before
    assert [name for name, _ in stack.calls] == ["preview"]


@pytest.mark.parametrize(
    ("traffic", "mirror", "message"),
    [
        pytest.param(
            {"alice": 50, "bob": 40}, None, "traffic: got 50+40=90; live traffic must sum to 0 or 100", id="sum"
        ),
        pytest.param(
            {"alice": 100, "carl": 0},
            None,
            "traffic.carl: no such deployment; car-classifier has ['alice', 'bob']",
            id="unknown",
        ),
        pytest.param(
            {"alice": 100, "bob": 0},
            {"bob": 60},
            "mirrorTraffic: got 60%; mirror at most 50% (the mirror-limits policy)",
            id="mirror-cap",
        ),
        pytest.param(
            None,
            {"bob": 10},
            "mirrorTraffic.bob: bob takes 10% of live traffic; mirror only to a deployment with 0 live traffic (the mirror-limits policy)",
            id="mirror-live",
        ),
    ],
)
def test_bad_splits_are_refused_before_anything_runs(project: Path, traffic, mirror, message: str) -> None:
    stack = StandInStack()
    with pytest.raises(EndpointError) as e:
        _workspace(project, stack).set_traffic("car-classifier", traffic, mirror=mirror)
    assert str(e.value) == f"{project / 'stacks' / 'Pulumi.dev.yaml'}: ml-endpoints:overrides.car-classifier.{message}"
    assert stack.calls == []


def test_regenerate_keys_counts_up_the_generation_and_returns_new_credentials(project: Path) -> None:
    stack = StandInStack()
    ws = _workspace(project, stack)
    report = ws.regenerate_keys("car-classifier", "primary")
    assert report["changes"] == ["ml-endpoints:keyRotation.car-classifier.primary: (unset) -> 1"]
    assert report["credentials"] == {"primaryKey": "n" * 48, "secondaryKey": "s" * 48}
    again = ws.regenerate_keys("car-classifier", "primary")
    assert again["changes"] == ["ml-endpoints:keyRotation.car-classifier.primary: 1 -> 2"]
    text = (project / "stacks" / "Pulumi.dev.yaml").read_text()
    assert text == (REPO / "stacks" / "Pulumi.dev.yaml").read_text() + (
        '  ml-endpoints:keyRotation:\n    car-classifier:\n      primary: "2"\n'
    )
    with pytest.raises(EndpointError, match=r"^key: got 'tertiary'; choose one of primary, secondary, token_signing$"):
        ws.regenerate_keys("car-classifier", "tertiary")


def test_promote_into_staging_runs_preview_and_up(project: Path) -> None:
    stack = StandInStack()
    ws = _workspace(project, stack, "prod")
    report = ws.promote("alice", "staging", dry_run=True)
    assert report["written"] is False and stack.calls == []


def test_label_selector() -> None:
    assert selector("cars", "blue") == "ml-endpoints.io/endpoint=cars,ml-endpoints.io/deployment=blue"
    assert selector("cars") == "ml-endpoints.io/endpoint=cars"


def test_without_the_pulumi_cli_every_engine_call_says_so(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(project))  # no pulumi here
    ws = Workspace("dev", project)
    with pytest.raises(EndpointError) as e:
        ws.credentials("car-classifier")
    assert str(e.value) == "stack dev: the pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/)"
    before = (project / "stacks" / "Pulumi.dev.yaml").read_text()
    with pytest.raises(EndpointError) as e:
        ws.set_traffic("car-classifier", {"alice": 50, "bob": 50})
    assert str(e.value) == "stack dev: the pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/)"
    assert (project / "stacks" / "Pulumi.dev.yaml").read_text() == before
