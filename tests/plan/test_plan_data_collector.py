"""The offline plan of a deployment with a data_collector: schema-valid objects, no policy violation."""

from __future__ import annotations

import shutil
from pathlib import Path

from endpoints.app.plan import plan_stack

REPO = Path(__file__).resolve().parents[2]

ALICE = "registry.example.com/ml/car-classifier-alice@sha256:" + "1" * 64
BOB = "registry.example.com/ml/car-classifier-bob@sha256:" + "2" * 64
STACK = f"""\
config:
  ml-endpoints:namespace: ml-dev
  ml-endpoints:domain: dev.example.com
  ml-endpoints:dataCollectorClaim: payloads
  ml-endpoints:overrides:
    car-classifier:
      deployments:
        alice:
          image: {ALICE}
        bob:
          image: {BOB}
"""
COLLECTOR = """\
data_collector:
  collections:
    model_inputs:
      enabled: 'True'
    model_outputs:
      enabled: 'True'
  sampling_rate: 0.5
  rolling_rate: Hour
"""


def test_plan_with_a_data_collector_validates(tmp_path: Path) -> None:
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    example = tmp_path / "examples" / "car-classifier"
    shutil.copytree(REPO / "examples" / "car-classifier", example)
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(STACK)
    without = plan_stack(tmp_path, "dev")
    alice = example / "deployments" / "alice.yml"
    alice.write_text(alice.read_text() + COLLECTOR)
    plan = plan_stack(tmp_path, "dev")
    assert plan.schema_problems == []
    assert plan.violations == without.violations  # the collector's volume and settings break no policy
    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in plan.objects if o["kind"] == "Deployment"}
    volumes = {name: [v for v in pod["volumes"] if v["name"] == "data-collector"] for name, pod in pods.items()}
    assert volumes == {
        "car-classifier-alice": [{"name": "data-collector", "persistentVolumeClaim": {"claimName": "payloads"}}],
        "car-classifier-bob": [],
    }
