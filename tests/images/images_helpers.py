"""Helpers of the container image tests: podman with this project's settings, builds, running containers."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from endpoints.images import ImageBuild, deployment_image_build
from endpoints.local.container import RESTRICTED  # the cluster's restricted pod runtime, one list
from endpoints.project import load_endpoint_project

REPO_ROOT = Path(__file__).resolve().parents[2]
PODMAN = [str(REPO_ROOT / "scripts" / "images" / "podman.sh")]
BASE_SCRIPT = REPO_ROOT / "scripts" / "images" / "build-base-image.sh"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
EXAMPLE = REPO_ROOT / "examples" / "car-classifier"
SERVING_TAG = "localhost/endpoints-serving:test"
RUNNER_TAG = "localhost/endpoints-batch-runner:test"
JOB_API_TAG = "localhost/endpoints-job-api:test"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman`` (through scripts/images/podman.sh) and return the finished process.

    Raises:
        AssertionError: naming the command and the tail of its output when ``check`` and it fails.
    """
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"podman {' '.join(args[:3])}... exited {proc.returncode}:\n{tail}")
    return proc


def _podman_problem() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc debootstrap)"
    if not Path("/usr/sbin/runc").exists():
        return "runc is not installed at /usr/sbin/runc (apt-get install runc)"
    try:
        info = subprocess.run([*PODMAN, "info"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"podman info failed: {e}"
    if info.returncode != 0:
        return f"podman info failed: {info.stderr.strip()[-300:]}"
    return None


def build_image(build: ImageBuild, tag: str, timeout: float = 600) -> float:
    """Build ``build`` as ``tag`` with host networking and the CA bundle (pip reaches the index); return seconds."""
    network = ["--network", "host"]
    if Path(CA_BUNDLE).is_file():
        network += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    start = time.monotonic()
    podman("build", "--layers", *network, "-t", tag, *build.podman_args(), timeout=timeout)
    return time.monotonic() - start


def build_deployment(project_dir: Path, deployment: str, base: str, tag: str) -> str:
    """Build one deployment of an endpoint folder with the shared recipe; return the tag."""
    project = load_endpoint_project(project_dir)
    recipe = deployment_image_build(
        project.deployments[deployment], project.deployment_file(deployment), base, project.root
    )
    assert recipe is not None
    build_image(recipe, tag)
    return tag


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Container:
    """A running container and the loopback URL it serves on."""

    name: str
    port: int

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        """Its stdout and stderr so far."""
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def wait(self, timeout: float = 60) -> int:
        """Wait for it to exit; return its exit code."""
        return int(podman("wait", self.name, timeout=timeout).stdout.strip().splitlines()[-1])

    def wait_ready(self, timeout: float = 90) -> None:
        """Poll ``GET /ready`` until 200.

        Raises:
            AssertionError: with the container's logs when not ready in time or when it exited.
        """
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/ready").status_code == 200:
                        return
                state = podman("inspect", "--format", "{{.State.Status}}", self.name, check=False).stdout.strip()
                if state not in ("running", "created", "configured"):
                    raise AssertionError(f"container {self.name} is {state!r}:\n{self.logs()[-4000:]}")
                time.sleep(0.25)
        raise AssertionError(f"container {self.name} not ready within {timeout} s:\n{self.logs()[-4000:]}")


@contextlib.contextmanager
def run_container(
    image: str, *args: str, options: tuple[str, ...] = (), port: int | None = None
) -> Iterator[Container]:
    """Start ``image`` detached under the restricted runtime; always removed afterwards.

    Args:
        image: The image.
        args: Arguments after the image (the entry point's arguments).
        options: Extra ``podman run`` options (volumes, environment).
        port: The port it will serve on (for :attr:`Container.url`); default a free one.
    """
    name = f"endpoints-test-{uuid.uuid4().hex[:10]}"
    container = Container(name, port or free_port())
    podman("run", "-d", "--name", name, *RESTRICTED, *options, image, *args)
    try:
        yield container
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
