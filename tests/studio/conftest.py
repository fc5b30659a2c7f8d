"""Fixtures of the studio tests: one real local endpoint (``endpoints local up``), one batch endpoint folder and one
``endpoints studio`` process over them, shared by the API tests and the browser tests (starting them costs
seconds)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from studio_helpers import (
    Studio,
    cli,
    env_with_state,
    make_batch_project,
    make_online_project,
    start_studio,
    stop,
)


@dataclass
class World:
    root: Path
    state: Path
    project: Path
    batch_project: Path
    batch_state: Path
    env: dict[str, str]
    endpoint: dict
    studio: Studio


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("studio")
    state = root / "state"
    env = env_with_state(state)
    project = make_online_project(root / "shop")
    batch_project = make_batch_project(root / "files-batch")
    batch_state = root / "batch-state"
    up = cli(env, root, "local", "up", str(project), "--detach", "--port", "0", "--json")
    endpoint = json.loads(up.stdout)
    studio = None
    try:
        studio = start_studio(
            env,
            root,
            root / "studio.log",
            "--state-dir",
            str(state),
            "--batch",
            str(batch_project),
            "--batch-state-dir",
            str(batch_state),
        )
        yield World(root, state, project, batch_project, batch_state, env, endpoint, studio)
    finally:
        if studio is not None:
            stop(studio.proc)
        cli(env, root, "local", "down")
        # Batch runners are their own sessions: they end by themselves once their job completes.


@pytest.fixture
def restore_endpoint_file(world: World) -> Iterator[None]:
    """Put the endpoint file (and the running split) back after a test that edits traffic."""
    saved = (world.project / "endpoint.yml").read_text()
    yield
    if (world.project / "endpoint.yml").read_text() != saved:
        (world.project / "endpoint.yml").write_text(saved)
        cli(world.env, world.root, "local", "update", str(world.project))
