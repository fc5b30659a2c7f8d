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

from endpoints.cluster.lifecycle import toolchain_dir

REPO = Path(__file__).resolve().parents[2]

# The CLI from the project's toolchain (scripts/toolchain.sh builds it into $ENDPOINTS_TOOLCHAIN_DIR/bin), else PATH.
TOOLCHAIN_BIN = toolchain_dir(REPO) / "bin"
SEARCH_PATH = os.pathsep.join([str(TOOLCHAIN_BIN), os.environ.get("PATH", "")])
NEEDED = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")

pytestmark = [
    pytest.mark.pulumi_cli,
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(b, path=SEARCH_PATH) is None for b in NEEDED),
        reason=f"{', '.join(b for b in NEEDED if shutil.which(b, path=SEARCH_PATH) is None)} not in {TOOLCHAIN_BIN} "
        "nor on PATH (scripts/toolchain.sh builds them); the pack is exercised over its gRPC protocol in "
        "test_crossguard.py meanwhile",
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
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PATH": os.pathsep.join([str(TOOLCHAIN_BIN), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
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
