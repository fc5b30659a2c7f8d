"""Helpers of the studio's ``--stack`` tests: the ``studio`` stack's file and the real ``endpoints studio`` process."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from cluster_helpers import ENDPOINTS

STACK = "studio"
ENDPOINT = "car-classifier"
NAMESPACE = "ml-studio"
TOKEN = "studio-cluster-test-token-0123456789"
URL_LINE = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=")
ENGINE_TIMEOUT_S = 600  # one preview, or one preview + up, of the engine on a shared machine


def write_stack_file(root: Path) -> Path:
    """``stacks/Pulumi.studio.yaml``: staging's car-classifier (pinned images, bob mirrored 10 %) in ml-studio; not one
    of dev/staging/prod by name, so the policy pack applies prod's rules, here as warnings."""
    staging = yaml.safe_load((root / "stacks" / "Pulumi.staging.yaml").read_text())["config"]
    config = {
        "ml-endpoints:namespace": NAMESPACE,
        "ml-endpoints:domain": "studio.endpoints.example.com",
        "ml-endpoints:endpoints": ["examples/car-classifier"],
        "ml-endpoints:createPriorityClasses": False,
        "ml-endpoints:policyEnforcement": "advisory",
        "ml-endpoints:overrides": {ENDPOINT: staging["ml-endpoints:overrides"][ENDPOINT]},
    }
    path = root / "stacks" / f"Pulumi.{STACK}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


@dataclass
class Served:
    """A running ``endpoints studio --stack studio`` and its stack file."""

    proc: subprocess.Popen[str]
    base: str
    log: Path
    stack_file: Path

    def client(self) -> httpx.Client:
        """A script's client: the bearer token (no cookie, so no CSRF header needed)."""
        return httpx.Client(base_url=self.base, timeout=ENGINE_TIMEOUT_S, headers={"Authorization": f"Bearer {TOKEN}"})

    def post(self, path: str, body: dict[str, object]) -> httpx.Response:
        with self.client() as c:
            return c.post(path, json=body)

    def stale_error(self, change_id: str) -> str:
        return (
            f"stack {STACK}: change {change_id} is not the one previewed: {self.stack_file} changed since the "
            "preview, or the change differs; preview it again"
        )

    def stop(self) -> None:
        """SIGTERM the studio (started by us) and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(root: Path, env: dict[str, str], log: Path, stack: str = STACK, extra: tuple[str, ...] = ()) -> Served:
    """``endpoints studio --stack STACK --project ROOT --port 0 EXTRA...``: read its URL, wait until it answers."""
    argv = [ENDPOINTS, "studio", "--stack", stack, "--project", str(root), "--port", "0", "--token", TOKEN, *extra]
    with log.open("w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    served = Served(proc, "", log, root / "stacks" / f"Pulumi.{stack}.yaml")
    deadline = time.monotonic() + 120
    while not (found := URL_LINE.search(log.read_text())):
        assert proc.poll() is None, f"studio exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"studio printed no URL: {log.read_text()}"
        time.sleep(0.2)
    served.base = f"http://127.0.0.1:{found.group(1)}"
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{served.base}/", timeout=2).status_code == 401:
                return served
        assert proc.poll() is None, f"studio exited: {log.read_text()}"
        assert time.monotonic() < deadline, "studio did not answer"
        time.sleep(0.2)
