"""The README's main command, run as written: `bash scripts/quickstart.sh` (with the test's venv already in place).

It must start the example endpoint, show a prediction and the traffic split, and leave no process behind.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes_with_env(marker: str) -> list[int]:
    """Pids whose environment holds ``marker`` (children inherit it, also after setsid)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes().split(b"\0") and _running(int(proc.name)):
                found.append(int(proc.name))
        except OSError:  # gone, or not ours
            continue
    return found


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a dead child re-parented to an init that has not reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_quickstart_runs_the_example_and_stops_everything(repo_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    marker = f"ENDPOINTS_STATE_DIR={state}"
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(state), "PORT": str(_free_port()), "REQUESTS": "100"}
    done = subprocess.run(
        ["bash", "scripts/quickstart.sh"],
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=540,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:]
    assert re.search(r"scoring URI : http://127\.0\.0\.1:\d+/score", out), out[-4000:]
    assert re.search(r"HTTP 200 from deployment (alice|bob)", out), out[-4000:]
    assert '{"type":"sedan","color":"red"}' in out
    assert '{"type":"suv","color":"blue"}' in out  # bob's multipart upload
    assert "without the key:  HTTP 401" in out
    split = re.search(r"status codes \{200: 100\}\n  alice\s+(\d+)\s+([\d.]+) %[ #]*\n  bob\s+(\d+)", out)
    assert split, out[-4000:]
    assert abs(int(split.group(1)) - 90) <= 10 and int(split.group(1)) + int(split.group(3)) == 100
    assert re.search(r"bob received \d+ mirrored copies", out), out[-4000:]
    assert "stopped 3 process(es)" in out
    # Nothing left: neither what inherited the environment (the router) nor the deployments `status` listed.
    assert _processes_with_env(marker) == []
    listed = [int(pid) for pid in re.findall(r"│ (?:alice|bob)\s+│ ready\s+│ (\d+)\s+│", out)]
    assert len(listed) == 2, out[-4000:]
    assert [pid for pid in listed if _running(pid)] == []
