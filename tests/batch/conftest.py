"""Fixtures for batch tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

# tests/serving has no __init__.py: once pytest puts tests/ on sys.path it would shadow the `serving` package
# (a namespace portion found before the editable install's finder). The repository root on sys.path lets the
# regular package win, whatever the import order.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.append(_REPO)

from batch_helpers import ApiProcess, Job  # noqa: E402


@pytest.fixture
def job_factory(tmp_path: Path):
    def make(**kw: object) -> Job:
        return Job(tmp_path, **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
def api_process(tmp_path):
    p = ApiProcess(tmp_path)
    p.start()
    yield p
    p.stop()
    # Runners run in their own session: stop what a test left running.
    for procs in (tmp_path / "state" / "jobs").glob("*/procs.json"):
        for proc in json.loads(procs.read_text())["processes"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc["pid"], signal.SIGKILL)
