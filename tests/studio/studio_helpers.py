"""Helpers of the studio tests: a real two-deployment local endpoint, a batch endpoint folder, the studio process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "out" / "studio-screenshots"

SCORE = textwrap.dedent(
    """
    import json, os

    def init():
        print(f"init of {os.environ['SERVICE_VERSION']}", flush=True)

    def run(raw):
        body = json.loads(raw)
        print(f"scored {body!r} on {os.environ['SERVICE_VERSION']}", flush=True)
        return {"deployment": os.environ["SERVICE_VERSION"], "body": body}
    """
)

ENDPOINT_YML = """\
# The shop endpoint of the studio tests: blue is live, green the challenger.
name: shop
auth_mode: key
traffic:
  blue: 90   # current model
  green: 10
"""

BATCH_SCORE = textwrap.dedent(
    """
    import os, time

    def init():
        pass

    def run(mini_batch):
        time.sleep(float(os.environ.get("SLEEP", "0")))
        rows = []
        for path in mini_batch:
            name = os.path.basename(path)
            if name.endswith("-bad.txt"):
                raise ValueError(f"cannot read {name}")
            with open(path) as f:
                rows.append(f"{name},{f.read().strip()}")
        return rows
    """
)


def deployment_yml(name: str) -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        endpoint_name: shop
        model:
          path: ../model
        code_configuration:
          code: ../code
          scoring_script: score.py
        environment:
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
        instance_type: Standard_DS3_v2
        instance_count: 2
        """
    )


def make_online_project(root: Path) -> Path:
    """``shop``: deployments blue (90 %) and green (10 %), key auth."""
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "model").mkdir()
    (root / "model" / "weights.txt").write_text("1\n")
    (root / "code" / "score.py").write_text(SCORE)
    (root / "endpoint.yml").write_text(ENDPOINT_YML)
    for name in ("blue", "green"):
        (root / "deployments" / f"{name}.yml").write_text(deployment_yml(name))
    return root


def make_batch_project(root: Path, sleep_s: float = 0.3) -> Path:
    """``files-batch``: one deployment ``nightly`` scoring text files, 2 per mini-batch, ``sleep_s`` each."""
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "model").mkdir()
    (root / "model" / "weights.txt").write_text("1\n")
    (root / "code" / "score.py").write_text(BATCH_SCORE)
    (root / "endpoint.yml").write_text(
        "name: files-batch\nauth_mode: aad_token\ndefaults:\n  deployment_name: nightly\n"
    )
    (root / "deployments" / "nightly.yml").write_text(
        textwrap.dedent(
            f"""\
            $schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
            name: nightly
            endpoint_name: files-batch
            type: model
            model:
              path: ../model
            code_configuration:
              code: ../code
              scoring_script: score.py
            compute: azureml:cpu-cluster
            resources:
              instance_count: 1
            environment_variables:
              SLEEP: "{sleep_s}"
            settings:
              max_concurrency_per_instance: 1
              mini_batch_size: 2
              output_action: append_row
              output_file_name: predictions.csv
              retry_settings:
                max_retries: 0
                timeout: 30
              error_threshold: -1
            """
        )
    )
    return root


def make_inputs(folder: Path, n: int, bad: set[int] = frozenset()) -> Path:  # type: ignore[assignment]
    """``n`` text files ``00000-f.txt``... holding their number (sorted in numeric order); numbers in ``bad`` are
    named ``NNNNN-bad.txt``, which the batch scoring script refuses."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:05d}-{'bad' if i in bad else 'f'}.txt").write_text(str(i))
    return folder


def cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``endpoints ...`` as the user would; fail the test with its output unless it exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{args}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass
class Studio:
    """A running ``endpoints studio`` process."""

    proc: subprocess.Popen[str]
    base: str
    token: str
    log: Path

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """A client that authenticated like a browser: the token URL once, then the cookie."""
        with httpx.Client(base_url=self.base, timeout=30) as client:
            first = client.get(f"/?token={self.token}")
            assert first.status_code == 303, first.text
            yield client


URL_LINE = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_\-]+)")


def start_studio(env: dict[str, str], cwd: Path, log: Path, *args: str) -> Studio:
    """Start ``endpoints studio --port 0 ...``, read its URL (token) from its output, wait until it answers."""
    with log.open("w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "endpoints.cli.main", "studio", "--port", "0", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 60
    while True:
        found = URL_LINE.search(log.read_text())
        if found:
            break
        assert proc.poll() is None, f"studio exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"studio printed no URL: {log.read_text()}"
        time.sleep(0.1)
    studio = Studio(proc, f"http://127.0.0.1:{found.group(1)}", found.group(2), log)
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{studio.base}/", timeout=2).status_code == 401:
                return studio
        assert proc.poll() is None, f"studio exited: {log.read_text()}"
        assert time.monotonic() < deadline, "studio did not answer"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM a process we started and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check, timeout: float = 60.0, what: str = "condition", poll_s: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll ``check()`` until it returns something truthy (readiness poll, no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


def keys_of(state: Path) -> dict[str, str]:
    return {name: (state / "shop" / "keys" / name).read_text().strip() for name in ("primary", "secondary")}


def env_with_state(state: Path) -> dict[str, str]:
    return {**os.environ, "ENDPOINTS_STATE_DIR": str(state), "COLUMNS": "250"}


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def have_chromium() -> str | None:
    """Debian's chromium for the browser tests, or None."""
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None
