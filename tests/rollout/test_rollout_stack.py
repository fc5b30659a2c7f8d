"""The stack target without an engine: its queries, what it writes, and when it previews and ups.

The engine (the Automation API's ``preview``/``up``) is replaced by a recorder that answers as the Automation API
does, a ``CommandError`` for a failed command; tests/cluster/test_rollout_cluster.py runs the real engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import CommandError

from endpoints.rollout.engine import Rollout
from endpoints.rollout.plan import RolloutError, build_plan
from endpoints.rollout.stack import StackTarget, guard_queries, policy_violations
from endpoints.rollout.window import Snapshot

REPO = Path(__file__).resolve().parents[2]
STACK_FILE = """\
# a comment the rollout keeps
config:
  ml-endpoints:namespace: ml-t
  ml-endpoints:endpoints:
    - examples/car-classifier
  ml-endpoints:overrides:
    car-classifier:
      traffic:
        alice: 100
        bob: 0
      mirrorTraffic: {}
"""
# The engine's output for a preview the pack refuses (Pulumi v3.274, trimmed): one advisory, one mandatory violation.
PREVIEW_OUTPUT = """\
Previewing update (t):
 +  kubernetes:core/v1:Service exposed create
 +  pulumi:pulumi:Stack policy-smoke-t create error: preview failed
Policies:
    ❌ ml-endpoints@v0.1.0 (local: /repo/policies)
        - [advisory]  min-replicas  (kubernetes:apps/v1:Deployment: alice)
          Deployments of prod run at least 2 replicas.
          Deployment "alice" runs 1 replica
        - [mandatory]  no-node-port-or-load-balancer  (kubernetes:core/v1:Service: exposed)
          Services must not be NodePort or LoadBalancer: that exposes the pods around the Gateway.
          Service "exposed" is type LoadBalancer; use ClusterIP and expose it through the Gateway

Diagnostics:
  pulumi:pulumi:Stack (policy-smoke-t):
    error: preview failed
"""
MANDATORY = (
    "[mandatory] no-node-port-or-load-balancer (kubernetes:core/v1:Service: exposed) Services must not be NodePort or"
    ' LoadBalancer: that exposes the pods around the Gateway. Service "exposed" is type LoadBalancer; use ClusterIP'
    " and expose it through the Gateway"
)


class Recorder:
    """Stands for the Automation API's stack: records calls, fails the commands it is told to."""

    def __init__(self, fail: Mapping[str, str] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = dict(fail or {})

    def _run(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise CommandError(CommandResult(self.fail[name], "error: preview failed", 255))

    def preview(self, **_: object) -> None:
        self._run("preview")

    def up(self, **_: object) -> None:
        self._run("up")


@pytest.fixture
def target(tmp_path: Path) -> StackTarget:
    shutil.copytree(
        REPO / "examples" / "car-classifier",
        tmp_path / "examples" / "car-classifier",
        ignore=shutil.ignore_patterns("models", "samples", ".endpoints"),
    )
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.t.yaml").write_text(STACK_FILE)
    return StackTarget.open(tmp_path, "t", "car-classifier", "http://127.0.0.1:9", 1.0)


def test_guard_queries_select_the_stack_s_namespace_endpoint_and_scoring_route(target: StackTarget) -> None:
    assert target.namespace == "ml-t"
    assert guard_queries("car-classifier", "ml-t") == (
        'sum by (deployment, status) (endpoints_requests_total{namespace="ml-t",endpoint="car-classifier",'
        'route="/score"})',
        'sum by (deployment, le) (endpoints_request_duration_seconds_bucket{namespace="ml-t",'
        'endpoint="car-classifier",route="/score"})',
    )


def test_policy_violations_are_cut_from_the_preview_output() -> None:
    assert policy_violations(PREVIEW_OUTPUT) == MANDATORY
    assert policy_violations(str(CommandError(CommandResult(PREVIEW_OUTPUT, "", 255)))) == MANDATORY
    # Without a mandatory violation (another failure): the last lines, bounded.
    assert policy_violations("a\n\nb\nerror: boom\n") == "a\nb\nerror: boom"
    assert len(policy_violations("x" * 10_000)) == 4000


def test_a_refused_preview_runs_no_up_and_leaves_the_live_weights_in_the_stack_file(target: StackTarget) -> None:
    recorder = Recorder({"preview": PREVIEW_OUTPUT})
    target._stack = recorder
    with pytest.raises(RolloutError) as e:
        target.apply({"alice": 90, "bob": 10}, {})
    assert str(e.value) == (
        f"stack t: preview with the policy pack refused traffic {{'alice': 90, 'bob': 10}}:\n{MANDATORY}"
    )
    assert recorder.calls == ["preview"]
    assert target.path.read_text() == STACK_FILE
    # The rollback to the weights still live writes the file and runs nothing.
    target.apply({"alice": 100, "bob": 0}, {})
    assert recorder.calls == ["preview"]
    assert target.path.read_text() == STACK_FILE


def test_each_step_is_previewed_then_up_and_a_failed_up_is_undone_by_a_new_up(target: StackTarget) -> None:
    recorder = Recorder()
    target._stack = recorder
    target.apply({"alice": 90, "bob": 10}, {})
    assert recorder.calls == ["preview", "up"]
    assert "alice: 90\n        bob: 10\n" in target.path.read_text()
    assert target.path.read_text().startswith("# a comment the rollout keeps\n")
    recorder.fail["up"] = "error: the API server went away"
    with pytest.raises(CommandError):
        target.apply({"alice": 50, "bob": 50}, {})
    assert recorder.calls == ["preview", "up", "preview", "up"]
    # What that up left live is unknown: going back to the weights before the rollout previews and ups again.
    del recorder.fail["up"]
    target.apply({"alice": 100, "bob": 0}, {})
    assert recorder.calls == ["preview", "up", "preview", "up", "preview", "up"]
    assert target.path.read_text() == STACK_FILE


class Refusing:
    """A target whose second change of weights is refused (a policy violation at that step); its rollback too with
    ``refuse_rollback``. Both deployments answer 100 requests between two scrapes, none failing."""

    def __init__(self, refuse_rollback: bool = False) -> None:
        self.refuse_rollback = refuse_rollback
        self.applied: list[dict[str, int]] = []
        self.calls = 0
        self.scrapes = 0

    def apply(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        self.calls += 1
        if self.calls == 2 or (self.calls == 3 and self.refuse_rollback):
            raise RolloutError("refused: [mandatory] some-rule")
        self.applied.append(dict(traffic))

    def snapshot(self) -> dict[str, Snapshot]:
        self.scrapes += 1
        n = 100.0 * self.scrapes
        return {"a": Snapshot(n, 0, {1.0: n}), "b": Snapshot(n, 0, {1.0: n})}

    def persist(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
        raise AssertionError("a refused rollout writes nothing")


def test_a_refused_step_is_a_rollback_with_the_refusal_as_reason() -> None:
    plan = build_plan("b", ("a", "b"), {"a": 100, "b": 0}, {}, steps=(10, 50, 100), bake_s=0.01)
    target = Refusing()
    outcome = Rollout(plan, target, sleep=lambda _s: None).run()
    assert (outcome.ok, outcome.reason) == (False, "step 50%: refused: [mandatory] some-rule")
    assert [e["event"] for e in outcome.timeline] == ["start", "step", "passed", "refused", "rollback"]
    assert target.applied == [{"a": 90, "b": 10}, {"a": 100, "b": 0}]


def test_a_refused_rollback_is_the_command_s_error_not_a_second_rollback() -> None:
    plan = build_plan("b", ("a", "b"), {"a": 100, "b": 0}, {}, steps=(10, 50, 100), bake_s=0.01)
    target = Refusing(refuse_rollback=True)
    with pytest.raises(RolloutError, match=r"^refused: \[mandatory\] some-rule$"):
        Rollout(plan, target, sleep=lambda _s: None).run()
    assert target.calls == 3 and target.applied == [{"a": 90, "b": 10}]
