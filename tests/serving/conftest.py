"""Fixtures of the inference-server tests (helpers live in serving_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import SCRIPTS, AppClient, ServerProcess, make_client


@pytest.fixture
def script_client():
    """Factory: ``script_client("text_score.py", **extra_env)`` -> AppClient over that script, closed at the end."""
    scorers = []

    def factory(script: str, app_root: Path = SCRIPTS, **env: str) -> AppClient:
        client, scorer = make_client({"AML_APP_ROOT": str(app_root), "AZUREML_ENTRY_SCRIPT": script, **env})
        scorers.append(scorer)
        return client

    yield factory
    for scorer in scorers:
        scorer.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``server(args, env)`` -> ServerProcess, stopped at the end of the test."""
    started: list[ServerProcess] = []

    def factory(args: list[str], env: dict[str, str] | None = None) -> ServerProcess:
        process = ServerProcess(args, env or {}, tmp_path / f"server-{len(started)}.log")
        started.append(process)
        return process

    yield factory
    for process in started:
        process.close()
