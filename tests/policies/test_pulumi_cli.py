"""`pulumi preview --policy-pack policies/` with the real Pulumi CLI, where it is installed.

The Kubernetes provider renders YAML to a folder (``renderYamlToDirectory``) instead of calling a cluster, and the
stack lives in a local file backend, so the test needs the CLI and its kubernetes plugin but no cluster or login.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.pulumi_cli,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("pulumi") is None,
        reason="the Pulumi CLI is not installed (it is not on any package registry this machine reaches); "
        "the pack is exercised over its gRPC protocol in test_crossguard.py instead",
    ),
]

PROGRAM = """\
import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("render", render_yaml_to_directory="rendered")
k8s.core.v1.Service(
    "exposed",
    metadata={"name": "exposed", "namespace": "ml"},
    spec={"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]},
    opts=pulumi.ResourceOptions(provider=provider),
)
"""


def test_preview_fails_on_a_mandatory_violation_in_prod(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        f"name: policy-smoke\nruntime:\n  name: python\n  options:\n    virtualenv: {Path(sys.prefix)}\n",
        encoding="utf-8",
    )
    (tmp_path / "__main__.py").write_text(PROGRAM, encoding="utf-8")
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path}",
        "PULUMI_CONFIG_PASSPHRASE": "test-only",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    subprocess.run(["pulumi", "stack", "init", "prod"], cwd=tmp_path, env=env, check=True, timeout=120)
    proc = subprocess.run(
        ["pulumi", "preview", "--stack", "prod", "--policy-pack", str(REPO / "policies"), "--non-interactive"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "[mandatory]" in output
    assert "no-node-port-or-load-balancer" in output
    assert 'Service "exposed" is type LoadBalancer; use ClusterIP and expose it through the Gateway' in output
