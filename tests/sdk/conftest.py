"""Fixtures of the SDK tests: a real local endpoint (serving processes + router) and a scripted HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_helpers import Scripted, make_project

from endpoints.sdk import LocalEndpoints


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalEndpoints]:
    """A state folder; every endpoint started in it is stopped after the test."""
    endpoints = LocalEndpoints(tmp_path / "state")
    yield endpoints
    endpoints.down()


@pytest.fixture
def shop(tmp_path: Path, local: LocalEndpoints) -> dict:
    """The ``shop`` endpoint running locally (key auth); its ``up`` summary."""
    return local.up(make_project(tmp_path / "shop"), port=0)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted().start()
    yield server
    server.stop()
