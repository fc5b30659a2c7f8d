"""The images built and run for real with podman: read-only root, uid 10001, no capabilities, loopback only.

Each test runs a container the way the Kubernetes pods run it (``--read-only`` with a writable ``/tmp``,
``--user 10001``, ``--cap-drop ALL``) and talks to it over 127.0.0.1.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from images_helpers import (
    EXAMPLE,
    build_deployment,
    free_port,
    podman,
    run_container,
)

pytestmark = [pytest.mark.podman, pytest.mark.slow, pytest.mark.timeout(900)]

KEY_OPTIONS = ("-e", "ENDPOINTS_AUTH_MODE=key", "-e", "ENDPOINTS_KEYS_DIR=/etc/endpoints/keys")
SAMPLES = sorted((EXAMPLE / "samples").glob("*.jpg")) + sorted((EXAMPLE / "samples").glob("*.png"))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def _in_image(image: str, script: str) -> str:
    """Run a Python snippet in ``image`` under the restricted runtime; return its stdout."""
    proc = podman(
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        "10001",
        "--cap-drop",
        "ALL",
        "--network",
        "host",
        "--entrypoint",
        "python",
        image,
        "-c",
        script,
    )
    return proc.stdout


# --- image contents --------------------------------------------------------------------------------------


def test_serving_image_config_and_contents(serving_image: str) -> None:
    config = json.loads(podman("image", "inspect", serving_image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m", "serving"]
    assert config["Cmd"] == ["--host", "0.0.0.0", "--port", "5001"]
    assert "Healthcheck" not in config
    env = dict(item.split("=", 1) for item in config["Env"])
    for name, value in {
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": "/tmp/.config/matplotlib",
        "AML_APP_ROOT": "/var/azureml-app",
    }.items():
        assert env[name] == value, name
    out = _in_image(
        serving_image,
        "import importlib.util as u, os, shutil, pwd, sys;"
        "print(json := __import__('json').dumps({"
        "'uid': os.getuid(), 'user': pwd.getpwuid(os.getuid()).pw_name,"
        "'missing': [m for m in ('pulumi', 'pulumi_kubernetes', 'pip', 'setuptools') if u.find_spec(m)],"
        "'tools': [t for t in ('gcc', 'cc', 'make', 'g++', 'pip', 'pip3') if shutil.which(t)],"
        "'present': [m for m in ('serving', 'endpoints', 'uvicorn', 'numpy', 'pandas', 'opentelemetry.sdk',"
        " 'opentelemetry.exporter.otlp.proto.http') if u.find_spec(m)],"
        "'python': sys.version_info[:2]}))",
    )
    assert json.loads(out) == {
        "uid": 10001,
        "user": "app",
        "missing": [],
        "tools": [],
        # The tracing extra: OTLP export of the serving layer's spans works in the cluster image.
        "present": [
            "serving",
            "endpoints",
            "uvicorn",
            "numpy",
            "pandas",
            "opentelemetry.sdk",
            "opentelemetry.exporter.otlp.proto.http",
        ],
        "python": [3, 11],
    }


def test_deployment_image_has_its_environment_and_no_installer(alice_image: str) -> None:
    config = json.loads(podman("image", "inspect", alice_image).stdout)[0]["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["AZUREML_ENTRY_SCRIPT"] == "score_alice.py"
    assert env["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models/model/1"
    assert config["User"] == "10001:10001"
    out = _in_image(
        alice_image,
        "import importlib.util as u, os, json;"
        "print(json.dumps({"
        "'sklearn': bool(u.find_spec('sklearn')), 'PIL': bool(u.find_spec('PIL')), 'pip': bool(u.find_spec('pip')),"
        "'azureml_server': bool(u.find_spec('azureml_inference_server_http')),"
        "'app': sorted(os.listdir('/var/azureml-app')),"
        "'model': sorted(os.listdir('/var/azureml-app/azureml-models/model/1/alice')),"
        "'sklearn_tests': os.path.isdir(os.path.join(os.path.dirname(u.find_spec('sklearn').origin), 'tests'))}))",
    )
    result = json.loads(out)
    assert result["app"] == ["azureml-models", "features.py", "score_alice.py", "score_batch.py", "score_bob.py"]
    assert "model.joblib" in result["model"]
    assert {k: result[k] for k in ("sklearn", "PIL", "pip", "azureml_server", "sklearn_tests")} == {
        "sklearn": True,
        "PIL": True,
        "pip": False,
        "azureml_server": False,
        "sklearn_tests": False,
    }


# --- the car-classifier example ---------------------------------------------------------------------------


def test_car_classifier_scores_photos_with_a_key(alice_image: str, keys_dir: Path) -> None:
    with run_container(
        alice_image,
        "--host",
        "127.0.0.1",
        "--port",
        str(port := free_port()),
        # Two pre-forked workers: their shared metrics files must also live under the writable /tmp.
        options=("-v", f"{keys_dir}:/etc/endpoints/keys:ro", "-e", "WORKER_COUNT=2", *KEY_OPTIONS),
        port=port,
    ) as c:
        c.wait_ready()
        with httpx.Client(base_url=c.url, timeout=30) as client:
            assert client.get("/").status_code == 200
            for photo in SAMPLES:
                body = {"image": base64.b64encode(photo.read_bytes()).decode()}
                key = "primary-key-0123456789" if photo.suffix == ".jpg" else "secondary-key-9876543210"
                r = client.post("/score", json=body, headers={"Authorization": f"Bearer {key}"})
                kind_color = photo.stem.split("-")
                assert (r.status_code, r.json()) == (200, {"type": kind_color[1], "color": kind_color[0]}), photo.name
            r = client.post("/score", json=body)
            assert (r.status_code, r.json()) == (401, {"error": "missing or invalid credentials"})
            r = client.post("/score", json=body, headers={"Authorization": "Bearer wrong"})
            assert (r.status_code, r.json()) == (401, {"error": "missing or invalid credentials"})
            metrics = client.get("/metrics").text
            assert 'endpoints_requests_total{route="/score",status="401"} 2.0' in metrics
        podman("kill", "--signal", "TERM", c.name)
        assert c.wait(timeout=40) == 0, c.logs()[-3000:]


# --- graceful shutdown -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slow_image(serving_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A deployment whose run() takes 2 s (so that requests are in flight when SIGTERM arrives)."""
    root = tmp_path_factory.mktemp("slow-endpoint")
    _write(root / "endpoint.yml", "name: slow-endpoint\nauth_mode: key\ntraffic: {slow: 100}\n")
    _write(
        root / "deployments" / "slow.yml",
        """
        name: slow
        endpoint_name: slow-endpoint
        instance_type: Standard_DS3_v2
        code_configuration: {code: ../code, scoring_script: score.py}
        environment: {image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest}
        """,
    )
    _write(
        root / "code" / "score.py",
        """
        import json
        import time


        def init():
            pass


        def run(raw_data):
            time.sleep(2)
            return {"echo": json.loads(raw_data)["n"]}
        """,
    )
    return build_deployment(root, "slow", serving_image, "localhost/slow-endpoint-slow:test")


def test_sigterm_finishes_in_flight_requests_then_exits_0(slow_image: str) -> None:
    port = free_port()
    env = (
        "-e",
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS=8",
        "-e",
        "ENDPOINTS_REQUEST_TIMEOUT_MS=10000",
        "-e",
        "ENDPOINTS_DRAIN_TIMEOUT_S=20",
    )
    with run_container(slow_image, "--host", "127.0.0.1", "--port", str(port), options=env, port=port) as c:
        c.wait_ready()
        results: dict[int, tuple[int, object]] = {}

        def call(n: int) -> None:
            with httpx.Client(timeout=30) as client:
                r = client.post(f"{c.url}/score", json={"n": n})
                results[n] = (r.status_code, r.json())

        threads = [threading.Thread(target=call, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        # Wait until all six hold an admission slot (inside run(), 2 s each, 8 allowed at once).
        deadline = time.monotonic() + 10
        with httpx.Client(timeout=5) as client:
            while "endpoints_requests_in_flight 6.0" not in client.get(f"{c.url}/metrics").text:
                assert time.monotonic() < deadline, "the six requests never were in flight together"
                time.sleep(0.05)
        sent = time.monotonic()
        podman("kill", "--signal", "TERM", c.name)
        time.sleep(0.3)
        # Once draining, the server admits nothing new: the connection is refused or answered 503.
        with httpx.Client(timeout=5) as client:
            try:
                late = client.get(f"{c.url}/ready").status_code
            except httpx.TransportError:
                late = None
        assert late in (None, 503)
        for t in threads:
            t.join(timeout=30)
        assert results == {n: (200, {"echo": n}) for n in range(6)}
        assert c.wait(timeout=40) == 0, c.logs()[-3000:]
        assert time.monotonic() - sent < 20


# --- batch ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def batch_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch endpoint whose scoring script returns one row per file: name, size and a checksum."""
    root = tmp_path_factory.mktemp("file-stats")
    _write(root / "endpoint.yml", "name: file-stats\nauth_mode: key\ndefaults: {deployment_name: stats}\n")
    _write(
        root / "deployments" / "stats.yml",
        """
        $schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
        name: stats
        endpoint_name: file-stats
        type: model
        code_configuration: {code: ../code, scoring_script: batch_score.py}
        environment: {image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest}
        resources: {instance_count: 1}
        settings:
          mini_batch_size: 10
          output_action: append_row
          output_file_name: predictions.csv
          retry_settings: {max_retries: 1, timeout: 60}
        """,
    )
    _write(
        root / "code" / "batch_score.py",
        """
        import hashlib
        import os

        import pandas as pd


        def init():
            pass


        def run(mini_batch):
            rows = []
            for path in mini_batch:
                data = open(path, "rb").read()
                rows.append({"file": os.path.basename(path), "bytes": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()[:16]})
            return pd.DataFrame(rows)
        """,
    )
    os.chmod(root, 0o755)  # mounted into the job API container, read as uid 10001
    return root


def test_batch_runner_image_scores_a_folder(runner_image: str, batch_project: Path, tmp_path: Path) -> None:
    import hashlib

    image = build_deployment(batch_project, "stats", runner_image, "localhost/file-stats-stats:test")
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    os.chmod(outputs, 0o777)  # the container writes as uid 10001
    expected = {}
    for i in range(25):
        data = os.urandom(100 + i)
        (inputs / f"part-{i:03d}.bin").write_bytes(data)
        expected[f"part-{i:03d}.bin"] = (str(len(data)), hashlib.sha256(data).hexdigest()[:16])
    os.chmod(inputs, 0o755)
    proc = podman(
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        "10001",
        "--cap-drop",
        "ALL",
        "--network",
        "host",
        "-v",
        f"{inputs}:/data/in:ro",
        "-v",
        f"{outputs}:/data/out",
        image,
        "--job-id",
        "job-1",
        "--input",
        "/data/in",
        "--output-dir",
        "/data/out",
        "--entry-script",
        "/var/azureml-app/batch_score.py",
        "--mini-batch-size",
        "10",
        "--max-concurrency-per-instance",
        "2",
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    with (outputs / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["file"]: (r["bytes"], r["sha256"]) for r in rows} == expected
    assert len(rows) == 25
    summary = json.loads((outputs / "predictions.summary.json").read_text())
    assert (summary["status"], summary["files"], summary["mini_batches"], summary["items"]) == (
        "Completed",
        25,
        {"total": 3, "done": 3, "failed": 0},
        {"succeeded": 25, "failed": 0},
    )


def test_job_api_image_serves_the_kubernetes_launcher_only(job_api_image: str) -> None:
    """The image runs the job API of a cluster (``--launcher kubernetes``; the cluster tests drive it against a real
    API server). The local launcher reads endpoint specs, which the image does not hold: asking for it names the
    command that serves it instead of failing later on a missing module."""
    proc = podman("run", "--rm", job_api_image, "--launcher", "local", "--project", "/project", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--launcher local reads an endpoint project: run python -m endpoints.local.batch_api" in proc.stderr
    proc = podman("run", "--rm", job_api_image, "--launcher", "kubernetes", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--templates and --endpoint-name are required with --launcher kubernetes" in proc.stderr


# --- model layout --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_path", "opened"), [("../weights", "weights/w.txt"), ("../model.bin", "model.bin")])
def test_image_lays_the_model_out_as_local_mode_does(
    serving_image: str, tmp_path: Path, model_path: str, opened: str
) -> None:
    """The script local mode runs (tests/local/test_model_layout.py) finds its model in the image the same way."""
    root = tmp_path / "layout"
    _write(root / "endpoint.yml", "name: layout\nauth_mode: key\ntraffic: {one: 100}\n")
    _write(
        root / "deployments" / "one.yml",
        f"""
        name: one
        endpoint_name: layout
        instance_type: Standard_DS3_v2
        model: {{path: {model_path}}}
        code_configuration: {{code: ../code, scoring_script: score.py}}
        environment: {{image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest}}
        """,
    )
    _write(root / "weights" / "w.txt", "folder-model")
    _write(root / "model.bin", "file-model")
    _write(root / "code" / "score.py", "def init():\n    pass\n\n\ndef run(raw):\n    return {}\n")
    tag = build_deployment(root, "one", serving_image, f"localhost/layout-one:{Path(opened).stem}")
    script = (
        "import glob, os; base = os.environ['AZUREML_MODEL_DIR'];"
        f" print(open(os.path.join(base, {opened!r})).read());"
        " print(sorted(os.path.relpath(p, base) for p in glob.glob(os.path.join(base, '*', '*.txt'))))"
    )
    expected = "folder-model\n['weights/w.txt']\n" if opened.startswith("weights") else "file-model\n[]\n"
    assert _in_image(tag, script) == expected
