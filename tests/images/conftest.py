"""Fixtures of the container image tests: podman with this project's settings, images built once a session.

Images are built with the same recipes the components use (``endpoints.images``) and tagged ``:test``.
Podman's layer cache makes a second session's builds take seconds. Tests that need podman are marked
``podman`` and skip with the reason when podman cannot build or run containers on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from images_helpers import (
    BASE_SCRIPT,
    EXAMPLE,
    JOB_API_TAG,
    RESTRICTED,
    RUNNER_TAG,
    SERVING_TAG,
    _podman_problem,
    build_deployment,
    build_image,
    podman,
)

from endpoints.images import LOCAL_BASE_IMAGE, batch_image_build, serving_image_build


@pytest.fixture(scope="session")
def podman_ready() -> None:
    """Skip (with the reason) when podman cannot run on this machine."""
    problem = _podman_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="session")
def base_image(podman_ready: None) -> str:
    """The Python base image: the local debootstrap image, built by scripts/images/build-base-image.sh if missing.

    Skips when it is missing and cannot be built (no debootstrap, no Debian mirror).
    """
    if podman("image", "exists", LOCAL_BASE_IMAGE, check=False).returncode != 0:
        proc = subprocess.run([str(BASE_SCRIPT)], capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            pytest.skip(f"{LOCAL_BASE_IMAGE} is missing and {BASE_SCRIPT.name} failed: {proc.stderr.strip()[-300:]}")
    probe = podman("run", "--rm", *RESTRICTED, LOCAL_BASE_IMAGE, "python3", "-c", "print('ok')", check=False)
    if probe.returncode != 0 or probe.stdout.strip() != "ok":
        pytest.skip(f"podman cannot run containers here: {(probe.stdout + probe.stderr).strip()[-300:]}")
    return LOCAL_BASE_IMAGE


@pytest.fixture(scope="session")
def serving_image(base_image: str) -> str:
    """The serving image (serving/Dockerfile on the local base), built once a session."""
    build_image(serving_image_build(base_image), SERVING_TAG)
    return SERVING_TAG


@pytest.fixture(scope="session")
def runner_image(serving_image: str) -> str:
    """The batch runner image (serving/Dockerfile.batch, target runner)."""
    build_image(batch_image_build("runner", serving_image), RUNNER_TAG)
    return RUNNER_TAG


@pytest.fixture(scope="session")
def job_api_image(serving_image: str) -> str:
    """The batch job API image (serving/Dockerfile.batch, target job-api)."""
    build_image(batch_image_build("job-api", serving_image), JOB_API_TAG)
    return JOB_API_TAG


@pytest.fixture(scope="session")
def alice_image(serving_image: str) -> str:
    """The car-classifier example's "alice" deployment image (models trained first when missing)."""
    if not (EXAMPLE / "models" / "alice" / "model.joblib").is_file():
        subprocess.run([sys.executable, str(EXAMPLE / "train.py")], check=True, timeout=900, capture_output=True)
    return build_deployment(EXAMPLE, "alice", serving_image, "localhost/car-classifier-alice:test")


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A keys folder as the Kubernetes Secret mounts it (files ``primary`` and ``secondary``)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "primary").write_text("primary-key-0123456789")
    (folder / "secondary").write_text("secondary-key-9876543210")
    os.chmod(folder, 0o755)
    for f in folder.iterdir():
        os.chmod(f, 0o644)
    return folder
