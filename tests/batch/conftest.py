"""Fixtures for batch tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_helpers import Job


@pytest.fixture
def job_factory(tmp_path: Path):
    def make(**kw: object) -> Job:
        return Job(tmp_path, **kw)  # type: ignore[arg-type]

    return make
