"""What the observability tests share: a one-deployment key-auth endpoint folder and the real CLI run on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def write_shop(root: Path, score: str) -> Path:
    """Endpoint ``shop`` (key auth) with deployment ``blue`` taking all traffic and scoring with ``score``."""
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "code" / "score.py").write_text(score)
    (root / "endpoint.yml").write_text("name: shop\nauth_mode: key\ntraffic:\n  blue: 100\n")
    (root / "deployments" / "blue.yml").write_text(
        "name: blue\nendpoint_name: shop\ncode_configuration:\n  code: ../code\n  scoring_script: score.py\n"
        "environment:\n  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\n"
        "instance_type: Standard_DS3_v2\n"
    )
    return root


def local_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``endpoints ARGS`` as a process, with its local state under ``tmp_path/state``."""
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(tmp_path / "state")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return cli
