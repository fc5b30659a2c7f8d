"""``python -m serving`` as a user runs it, on 127.0.0.1:<ephemeral>, for the tests of the real serving process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

SCRIPTS = Path(__file__).parent / "scripts"
REPO = Path(__file__).resolve().parents[3]
# What the test runner's own environment must not hand the server (the tests set what they mean).
_DROPPED_ENV = ("ENDPOINTS_", "PROMETHEUS_", "OTEL_")


class ServingProcess:
    """One serving process with a script of ``scripts/`` and its output in ``log_path``; ready once ``/ready`` is 200.

    ``stop()`` sends SIGTERM and waits ``stop_timeout_s`` for the drain (then kills).
    """

    def __init__(
        self, log_path: Path, script: str, workers: int = 1, env: dict[str, str] | None = None, stop_timeout_s=15.0
    ) -> None:
        self.log_path = log_path
        self.stop_timeout_s = stop_timeout_s
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        full = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV)}
        full.update({"AML_APP_ROOT": str(SCRIPTS), "PYTHONUNBUFFERED": "1", **(env or {})})
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving",
                "--entry-script",
                str(SCRIPTS / script),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--workers",
                str(workers),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full,
            cwd=str(REPO),
        )
        self.port = self._wait_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log)
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"server did not listen within 60 s:\n{self.log}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as c:
            while time.monotonic() < deadline:
                try:
                    if c.get(self.url + "/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"server not ready within 60 s:\n{self.log}")

    def stop(self) -> None:
        """SIGTERM: the server drains (and flushes what it holds), then exits; killed after ``stop_timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
