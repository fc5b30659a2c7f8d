"""Fixtures: the toy scoring app behind the frontend, served by uvicorn in a thread on 127.0.0.1:<ephemeral>."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from frontend_serve import PRIMARY, SECONDARY, SIGNING_KEY, Served, serve_frontend

from serving.frontend import FrontendSettings


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "primary").write_text(PRIMARY + "\n")
    (folder / "secondary").write_text(SECONDARY + "\n")
    return folder


@pytest.fixture
def signing_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "token_signing_key"
    path.write_bytes(SIGNING_KEY)
    return path


@pytest.fixture
def served() -> Iterator[Callable[..., contextlib.AbstractContextManager[Served]]]:
    """Factory: ``with served(**settings) as s:`` serves the toy app behind a frontend built from settings."""

    def factory(
        ready: dict | None = None, tracer_provider=None, **values: object
    ) -> contextlib.AbstractContextManager[Served]:
        return serve_frontend(FrontendSettings(**values), ready, tracer_provider)

    yield factory


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c
