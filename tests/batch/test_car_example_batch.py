"""The car-classifier-batch example: valid specs, and a real local batch job (CLI, job API code, runner processes)
scoring the online example's sample photos with its alice model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ONLINE = REPO / "examples" / "car-classifier"
EXAMPLE = REPO / "examples" / "car-classifier-batch"
CLI = [sys.executable, "-m", "endpoints.cli.main"]


@pytest.fixture(scope="module")
def trained() -> Path:
    """The online example's alice model (trained once, if this checkout has not yet: 10-35 s)."""
    if not (ONLINE / "models" / "alice" / ".trained").is_file():
        subprocess.run([sys.executable, str(ONLINE / "train.py")], check=True, timeout=900)  # a loaded CI machine
    return ONLINE / "models" / "alice"


def test_the_batch_code_is_the_online_examples_folder() -> None:
    """The model was trained on features.py: the batch deployment scores from that same folder, not a copy."""
    from endpoints.project import load_endpoint_project

    nightly = load_endpoint_project(EXAMPLE).deployments["nightly"]
    code = EXAMPLE / "deployments" / nightly.code_configuration.code
    assert code.resolve() == (ONLINE / "code").resolve()
    assert (code / nightly.code_configuration.scoring_script).is_file()
    assert not (EXAMPLE / "code").exists()


def test_the_example_validates() -> None:
    result = subprocess.run([*CLI, "validate", str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    # Its environment.image is one of Azure's curated images: validate says what the cluster builds on instead.
    note = (
        f"note: {EXAMPLE}/deployments/nightly.yml: environment.image:"
        " 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest' is one of Azure's curated inference images; on"
        " the cluster the deployment image is built on the stack's batch runner image instead (stack setting"
        " ml-endpoints:baseImageRedirects); local mode runs in this machine's Python"
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"{note}\nok: {EXAMPLE}"), result.stderr


def test_batch_invoke_scores_the_sample_photos_locally(trained: Path, tmp_path: Path) -> None:
    samples = ONLINE / "samples"
    result = subprocess.run(
        # One instance with one worker: the fewest processes (each imports scikit-learn) on a shared machine.
        [
            *CLI,
            "batch",
            "invoke",
            str(EXAMPLE),
            "--input",
            str(samples),
            "--wait",
            "--json",
            "--state-dir",
            str(tmp_path / "state"),
            "--job-id",
            "cars-1",
            "--set",
            "instance_count=1",
            "--set",
            "max_concurrency_per_instance=1",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    job = json.loads(result.stdout)
    assert (job["id"], job["status"], job["deployment"], job["endpoint"]) == (
        "cars-1",
        "Completed",
        "nightly",
        "car-classifier-batch",
    )
    files = sorted(p.name for p in samples.iterdir())
    assert len(files) == 9  # 8 photos and request.json
    # mini_batch_size 2: 5 mini-batches, every one done (a bad file is a row, not a failed mini-batch).
    assert job["counts"]["mini_batches"] == {"total": 5, "done": 5, "failed": 0}
    with (Path(job["output"]) / "predictions.csv").open(newline="", encoding="utf-8") as f:
        rows = sorted(csv.reader(f))
    header = ["file", "type", "color", "error"]
    assert header in rows
    rows.remove(header)
    expected = [[name, *name.split(".")[0].split("-")[::-1], ""] for name in files if name != "request.json"]
    expected.append(
        ["request.json", "error", "error", "the request does not hold a readable image (PNG or JPEG expected)"]
    )
    assert rows == sorted(expected)
