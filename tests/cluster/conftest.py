"""Fixtures of the end-to-end tests (see cluster_helpers.py): one cluster per session, stopped by pid at the end even
when a test fails, and a copy of the repository with the Pulumi CLI's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import (
    ENDPOINTS,
    PULUMI_BINARIES,
    REPO,
    Cluster,
    Project,
    _kill_recorded,
    copy_repo,
    free_port,
    pulumi_env,
    require,
    require_crds,
)

from endpoints.cluster.lifecycle import REQUIRED_BINARIES, toolchain_dir


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require(REQUIRED_BINARIES)
    require_crds()
    state_dir = tmp_path_factory.mktemp("cluster") / "state"
    etcd = free_port()
    while free_port() == etcd + 1:  # the peer port is etcd's + 1; it must be free too
        etcd = free_port()
    argv = [
        ENDPOINTS,
        "cluster",
        "up",
        "--state-dir",
        str(state_dir),
        "--apiserver-port",
        str(free_port()),
        "--etcd-port",
        str(etcd),
        "--kwok-port",
        str(free_port()),
        "--timeout",
        "300",
    ]
    env = {**os.environ, "ENDPOINTS_TOOLCHAIN_DIR": str(toolchain_dir(REPO))}
    try:
        up = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        assert up.returncode == 0, f"endpoints cluster up failed:\n{up.stderr[-4000:]}"
        line = up.stdout.strip().splitlines()[-1]
        assert line.startswith("export KUBECONFIG="), up.stdout
        yield Cluster(state_dir, Path(line.split("=", 1)[1].strip("'")))
    finally:
        down = subprocess.run(
            [ENDPOINTS, "cluster", "down", "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if down.returncode != 0:
            _kill_recorded(state_dir)


@pytest.fixture(scope="session")
def project(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Project:
    require(PULUMI_BINARIES)
    base = tmp_path_factory.mktemp("pulumi")
    (base / "backend").mkdir()
    env = pulumi_env(base / "backend", cluster.kubeconfig)
    env["PULUMI_PYTHON_CMD"] = sys.executable
    return Project(copy_repo(base / "repo"), env)
