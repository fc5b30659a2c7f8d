"""A process local mode spawns starts its program only once the CLI has recorded it (endpoints/local/supervisor.py
``spawn``/``release``): a CLI killed in between (SIGKILL, no cleanup of its own) leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from endpoints.local.supervisor import release, spawn


def _program(marker: Path) -> list[str]:
    return [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]


def _gone(pid: int, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_cli_killed_before_recording_leaves_nothing_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cli = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from endpoints.local.supervisor import spawn
        proc = spawn({_program(marker)!r}, dict(os.environ), Path({str(tmp_path)!r}), Path({str(tmp_path / "log")!r}),
                     foreground=False)
        print(proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # killed before it recorded (and released) the process
    """)
    out = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == -9, out.stderr
    pid = int(out.stdout.split()[0])
    assert _gone(pid), f"pid {pid} still runs after its CLI died"
    assert not marker.exists()


def test_a_released_process_runs_its_program(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = spawn(_program(marker), dict(os.environ), tmp_path, tmp_path / "log", foreground=False)
    time.sleep(0.2)  # held: nothing has run yet, however long the caller takes to record it
    assert not marker.exists()
    release(proc)
    assert proc.wait(30) == 0
    assert marker.read_text() == "ran"
