"""Helpers for batch tests: input folders, runner settings, running real runner processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

FIXTURES = Path(__file__).parent / "fixtures"
SCORE = FIXTURES / "score.py"
REPO = Path(__file__).resolve().parents[2]
PROJECT = FIXTURES / "project"
KEY = "k" * 40


def make_inputs(folder: Path, n: int, prefix: str = "f", bad: set[int] | None = None) -> list[Path]:
    """Create ``n`` small text files (content = the number); numbers in ``bad`` get the ``bad`` prefix."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        name = f"{'bad' if bad and i in bad else prefix}{i:05d}.txt"
        # Sorting must keep numeric order whatever the prefix: put the number first for bad files too.
        name = f"{i:05d}-{name}"
        p = folder / name
        p.write_text(str(i))
        paths.append(p)
    return paths


class Job:
    """A runner job in a temporary folder."""

    def __init__(self, tmp: Path, n_files: int = 100, bad: set[int] | None = None, **settings: object) -> None:
        self.tmp = tmp
        self.inputs = tmp / "in"
        self.out = tmp / "out"
        self.attempts = tmp / "attempts"
        self.attempts.mkdir(exist_ok=True)
        make_inputs(self.inputs, n_files, bad=bad)
        env = {"ATTEMPTS_DIR": str(self.attempts)}
        env.update(settings.pop("env", {}))  # type: ignore[arg-type]
        self.settings = {
            "job_id": "job-1",
            "input": str(self.inputs),
            "output_dir": str(self.out),
            "entry_script": str(SCORE),
            "mini_batch_size": 10,
            "progress_interval": 0.5,
            "environment_variables": env,
            **settings,
        }
        self.settings_path = tmp / "settings.json"
        self.write_settings()

    def write_settings(self) -> None:
        self.settings_path.write_text(json.dumps(self.settings))

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "serving.batch.runner", "--settings", str(self.settings_path), *extra]

    def run(self, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*extra), capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def start(self, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
        )

    @property
    def output(self) -> Path:
        return self.out / self.settings.get("output_file_name", "predictions.csv")  # type: ignore[operator]

    def rows(self) -> list[str]:
        return self.output.read_text().splitlines() if self.output.exists() else []

    def calls(self) -> list[list[str]]:
        log = self.tmp / "calls.log"
        return [line.split() for line in log.read_text().splitlines()] if log.exists() else []

    def summary(self) -> dict:
        return json.loads((self.out / "predictions.summary.json").read_text())

    def journal_lines(self) -> int:
        path = self.out / ".predictions.csv.batch" / "journal.jsonl"
        return path.read_bytes().count(b"\n") if path.exists() else 0


def expected_rows(n: int, pad: int = 0, skip: set[int] | None = None) -> list[str]:
    return [f"{i:05d}-f{i:05d}.txt,{i},{'p' * pad}" for i in range(n) if not (skip and i in skip)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiProcess:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        keys = tmp / "keys"
        keys.mkdir(exist_ok=True)
        (keys / "primary").write_text(KEY)
        (keys / "secondary").write_text("s" * 40)
        self.env = {
            **os.environ,
            "ENDPOINTS_AUTH_MODE": "key",
            "ENDPOINTS_KEYS_DIR": str(keys),
            "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "8",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        self.log = open(self.tmp / f"api-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "endpoints.local.batch_api",
                "--project",
                str(PROJECT),
                "--state-dir",
                str(self.state),
                "--port",
                str(self.port),
            ],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError((self.tmp / f"api-{self.port}.log").read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None
            self.log.close()

    def call(self, method: str, path: str, **kw):
        headers = {"authorization": f"Bearer {KEY}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kw)

    def wait(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("GET", f"/jobs/{job_id}").json()
            if job["status"] in statuses:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} stayed {job['status']}")
