"""Azure's model layout in local mode (a folder model keeps its name under AZUREML_MODEL_DIR, a file model sits in
it) and ``endpoints invoke`` with multipart files and raw bodies.

Real processes: ``endpoints local up`` starts the serving processes of a project whose scoring scripts were
written for Azure (they open ``AZUREML_MODEL_DIR/<folder>/<file>`` and glob ``AZUREML_MODEL_DIR/*/*.txt``; a
``@rawhttp`` script echoes what it received).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from contract.model_layout import image_model_dir, model_entry_name, model_location, stage_local_model

# Written as for Azure ML: no recursive search, the model folder's own name in the path.
SCORE_FOLDER = textwrap.dedent(
    """
    import glob, os

    def init():
        global weights, found
        base = os.environ["AZUREML_MODEL_DIR"]
        with open(os.path.join(base, "weights", "w.txt")) as f:
            weights = f.read()
        found = sorted(os.path.relpath(p, base) for p in glob.glob(os.path.join(base, "*", "*.txt")))

    def run(raw):
        return {"weights": weights, "found": found}
    """
)
SCORE_FILE = textwrap.dedent(
    """
    import os

    def init():
        global weights
        with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.bin")) as f:
            weights = f.read()

    def run(raw):
        return {"weights": weights, "entries": sorted(os.listdir(os.environ["AZUREML_MODEL_DIR"]))}
    """
)

SCORE_RAW = textwrap.dedent(
    """
    from azureml.contrib.services.aml_request import rawhttp
    from azureml.contrib.services.aml_response import AMLResponse

    def init():
        pass

    @rawhttp
    def run(request):
        files = {k: [f.filename, f.content_type, f.read().decode()] for k, f in request.files.items()}
        body = "" if files else request.get_data().decode()
        kind = request.headers.get("Content-Type", "").split(";")[0]
        return AMLResponse({"content_type": kind, "files": files, "body": body}, 200, json_str=True)
    """
)


def _deployment(name: str, model_path: str, script: str) -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        endpoint_name: layout
        model:
          path: {model_path}
        code_configuration:
          code: ../code
          scoring_script: {script}
        environment:
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
        instance_type: Standard_DS3_v2
        """
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "layout"
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "weights").mkdir()
    (root / "weights" / "w.txt").write_text("folder-model")
    (root / "weights" / "extra.txt").write_text("x")
    (root / "model.bin").write_text("file-model")
    (root / "code" / "score_folder.py").write_text(SCORE_FOLDER)
    (root / "code" / "score_file.py").write_text(SCORE_FILE)
    (root / "code" / "score_raw.py").write_text(SCORE_RAW)
    (root / "endpoint.yml").write_text("name: layout\nauth_mode: key\ntraffic:\n  folder: 100\n  file: 0\n  raw: 0\n")
    (root / "deployments" / "raw.yml").write_text(_deployment("raw", "../model.bin", "score_raw.py"))
    (root / "deployments" / "folder.yml").write_text(_deployment("folder", "../weights", "score_folder.py"))
    (root / "deployments" / "file.yml").write_text(_deployment("file", "../model.bin", "score_file.py"))
    return root


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _flat(text: str) -> str:
    """Typer's error box wraps lines: compare words only."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_local_mode_lays_models_out_as_azure(project, tmp_path):
    up = _cli(tmp_path, "local", "up", str(project), "--detach", "--port", "0", "--json")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        uri = json.loads(up.stdout)["scoring_uri"]
        key = json.loads(_cli(tmp_path, "get-credentials", "layout").stdout)["primaryKey"]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=10) as client:
            folder = client.post(uri, json={}, headers={**headers, "azureml-model-deployment": "folder"})
            file = client.post(uri, json={}, headers={**headers, "azureml-model-deployment": "file"})
        assert folder.status_code == 200, folder.text
        assert folder.json() == {"weights": "folder-model", "found": ["weights/extra.txt", "weights/w.txt"]}
        assert file.status_code == 200, file.text
        assert file.json() == {"weights": "file-model", "entries": ["model.bin"]}

        (tmp_path / "car.png").write_bytes(b"png-bytes")
        (tmp_path / "meta.csv").write_text("a,b\n")
        (tmp_path / "body.txt").write_text("plain words")
        multipart = _cli(
            tmp_path,
            "invoke",
            "layout",
            "--deployment",
            "raw",
            "--file",
            f"image={tmp_path / 'car.png'}",
            "--file",
            f"meta={tmp_path / 'meta.csv'}",
        )
        assert multipart.returncode == 0, multipart.stderr
        assert json.loads(multipart.stdout) == {
            "content_type": "multipart/form-data",
            "files": {"image": ["car.png", "image/png", "png-bytes"], "meta": ["meta.csv", "text/csv", "a,b\n"]},
            "body": "",
        }
        raw = _cli(
            tmp_path,
            "invoke",
            "layout",
            "--deployment",
            "raw",
            "--request-file",
            str(tmp_path / "body.txt"),
            "--content-type",
            "application/x-custom",
        )
        assert raw.returncode == 0, raw.stderr
        assert json.loads(raw.stdout) == {"content_type": "application/x-custom", "files": {}, "body": "plain words"}
        bad = _cli(tmp_path, "invoke", "layout", "--file", "no-equals-sign")
        assert bad.returncode == 2
        assert "got 'no-equals-sign'; write NAME=PATH, e.g. image=car.jpg" in _flat(bad.stderr)
        both = _cli(
            tmp_path,
            "invoke",
            "layout",
            "--file",
            f"a={tmp_path / 'body.txt'}",
            "--request-file",
            str(tmp_path / "body.txt"),
        )
        assert both.returncode == 2
        assert "give either --request-file or one or more --file NAME=PATH" in _flat(both.stderr)
    finally:
        _cli(tmp_path, "local", "down")


def test_entry_name_and_location():
    assert model_entry_name("../models/alice") == "alice"
    assert model_entry_name("../models/alice/") == "alice"
    assert model_entry_name("model.pkl") == "model.pkl"
    assert model_entry_name("s3://bucket/models/alice/?sig=secret") == "alice"
    assert model_entry_name("https://host/m/model.onnx?sv=1&sig=x") == "model.onnx"
    assert model_entry_name("s3://bucket") == "model"
    assert model_entry_name(".") == "model"
    assert model_location("/var/azureml-app/azureml-models/cars/3/", "../models/alice") == (
        "/var/azureml-app/azureml-models/cars/3/alice"
    )
    assert image_model_dir("cars", "3") == "/var/azureml-app/azureml-models/cars/3"
    assert image_model_dir() == "/var/azureml-app/azureml-models/model/1"
    assert image_model_dir("cars", "3", "/mnt/models") == "/mnt/models"


def test_stage_replaces_a_renamed_model_and_names_a_missing_one(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b.pkl").write_text("b")
    staged = stage_local_model(tmp_path / "a", tmp_path / "state" / "dep")
    assert sorted(p.name for p in staged.iterdir()) == ["a"]
    assert (staged / "a").resolve() == (tmp_path / "a").resolve()
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    stage_local_model(tmp_path / "b.pkl", staged)
    assert sorted(p.name for p in staged.iterdir()) == ["b.pkl"]
    assert (staged / "b.pkl").read_text() == "b"
    with pytest.raises(FileNotFoundError, match=r"model.path: got '.*/missing'; no such file or folder"):
        stage_local_model(tmp_path / "missing", staged)
