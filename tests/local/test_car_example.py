"""The car-classifier example: specs, synthetic photos, trained models, and the endpoint answering locally."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from endpoints.project import load_endpoint_project

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "car-classifier"
SAMPLES = sorted(EXAMPLE.glob("samples/*.jpg"))


@pytest.fixture(scope="module")
def carsynth():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import carsynth as module

        yield module
    finally:
        sys.path.remove(str(EXAMPLE))


def test_specs_validate_with_azure_layout_and_both_endpoint_files():
    project = load_endpoint_project(EXAMPLE)
    assert project.endpoint.auth_mode == "key"
    assert project.endpoint.traffic == {"alice": 90, "bob": 10}
    assert sorted(project.deployments) == ["alice", "bob"]
    alice, bob = project.deployments["alice"], project.deployments["bob"]
    assert not project.catalog.get(alice.instance_type).is_gpu
    assert project.catalog.get(bob.instance_type).is_gpu
    assert alice.code_configuration.scoring_script == "score_alice.py"
    assert bob.environment.conda_file == "../environment/conda-bob.yaml"
    mirror = load_endpoint_project(EXAMPLE, "endpoint.mirror.yml")
    assert (mirror.endpoint.traffic, mirror.endpoint.mirror_traffic) == ({"alice": 100, "bob": 0}, {"bob": 10})


def test_synthetic_photos_are_deterministic_and_labelled(carsynth):
    first = [(np.asarray(img), t, c) for img, t, c in carsynth.dataset(30, seed=11)]
    again = [(np.asarray(img), t, c) for img, t, c in carsynth.dataset(30, seed=11)]
    other = [np.asarray(img) for img, _, _ in carsynth.dataset(30, seed=12)]
    assert all(np.array_equal(a[0], b[0]) and a[1:] == b[1:] for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0][0], other[0])
    assert first[0][0].shape == (96, 128, 3)
    labels = {(t, c) for _, t, c in first}
    assert len(labels) == 24  # every type/color pair appears in 24 consecutive photos


def test_samples_are_small_and_request_is_base64_of_red_sedan():
    assert len(SAMPLES) >= 4
    assert all(p.stat().st_size < 10_000 for p in SAMPLES)
    request = json.loads((EXAMPLE / "samples" / "request.json").read_text())
    assert base64.b64decode(request["image"]) == (EXAMPLE / "samples" / "red-sedan.jpg").read_bytes()


@pytest.fixture(scope="module")
def trained():
    if not all((EXAMPLE / "models" / name / ".trained").is_file() for name in ("alice", "bob")):
        subprocess.run([sys.executable, str(EXAMPLE / "train.py")], check=True, timeout=900)
    return EXAMPLE / "models"


@pytest.fixture(scope="module")
def endpoint(trained, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(state)}
    cli = [sys.executable, "-m", "endpoints.cli.main"]
    up = subprocess.run(
        [*cli, "local", "up", str(EXAMPLE), "--detach", "--port", "0", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert up.returncode == 0, up.stderr
    try:
        creds = subprocess.run([*cli, "get-credentials", "car-classifier"], env=env, capture_output=True, text=True)
        key = json.loads(creds.stdout)["primaryKey"]
        yield json.loads(up.stdout)["scoring_uri"], {"Authorization": f"Bearer {key}"}
    finally:
        subprocess.run([*cli, "local", "down"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
@pytest.mark.parametrize("deployment", ["alice", "bob"])
def test_both_models_classify_the_samples_as_json_base64(endpoint, sample, deployment):
    uri, auth = endpoint
    color, car_type = sample.stem.split("-")
    body = {"image": base64.b64encode(sample.read_bytes()).decode()}
    r = httpx.post(uri, json=body, headers={**auth, "azureml-model-deployment": deployment}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["azureml-model-deployment"] == deployment
    assert r.json() == {"type": car_type, "color": color}


@pytest.mark.slow
def test_bob_takes_multipart_upload_and_raw_png(endpoint):
    uri, auth = endpoint
    pinned = {**auth, "azureml-model-deployment": "bob"}
    with (EXAMPLE / "samples" / "yellow-truck.jpg").open("rb") as f:
        r = httpx.post(uri, files={"image": ("truck.jpg", f, "image/jpeg")}, headers=pinned, timeout=30)
    assert (r.status_code, r.json()) == (200, {"type": "truck", "color": "yellow"})
    png = (EXAMPLE / "samples" / "white-van.png").read_bytes()
    r = httpx.post(uri, content=png, headers={**pinned, "Content-Type": "image/png"}, timeout=30)
    assert (r.status_code, r.json()) == (200, {"type": "van", "color": "white"})
    r = httpx.post(uri, content=b"not an image", headers={**pinned, "Content-Type": "image/png"}, timeout=30)
    assert (r.status_code, r.json()) == (
        400,
        {"error": "the request does not hold a readable image (PNG or JPEG expected)"},
    )
    r = httpx.post(uri, content=b"{}", headers={**pinned, "Content-Type": "application/json"}, timeout=30)
    assert (r.status_code, r.json()) == (
        400,
        {"error": 'expected multipart upload, image/* bytes or JSON {"image": "<base64>"}'},
    )


@pytest.mark.slow
def test_alice_swagger_and_auth(endpoint):
    uri, auth = endpoint
    swagger_uri = uri.replace("/score", "/swagger.json")
    r = httpx.get(swagger_uri, headers={**auth, "azureml-model-deployment": "alice"}, timeout=30)
    assert r.status_code == 200
    assert "image" in json.dumps(r.json()["definitions"])
    assert httpx.post(uri, json={"image": ""}, timeout=30).status_code == 401


@pytest.mark.slow
def test_split_over_300_requests(endpoint):
    uri, auth = endpoint
    body = (EXAMPLE / "samples" / "request.json").read_bytes()
    counts = {"alice": 0, "bob": 0}
    with httpx.Client(timeout=30, headers={**auth, "Content-Type": "application/json"}) as client:
        for _ in range(300):
            r = client.post(uri, content=body)
            assert r.json() == {"type": "sedan", "color": "red"}
            counts[r.headers["azureml-model-deployment"]] += 1
    assert abs(counts["bob"] / 300 - 0.10) <= 0.05


def test_trained_models_are_git_ignored():
    out = subprocess.run(
        [
            "git",
            "check-ignore",
            "examples/car-classifier/models/alice/model.joblib",
            "examples/car-classifier/models/bob/type.lgb.txt",
            "examples/car-classifier/models/bob/.trained",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == [
        "examples/car-classifier/models/alice/model.joblib",
        "examples/car-classifier/models/bob/type.lgb.txt",
        "examples/car-classifier/models/bob/.trained",
    ]
