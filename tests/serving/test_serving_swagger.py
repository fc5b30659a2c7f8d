"""``/swagger.json`` equals what azureml-inference-server-http 1.5.1 generates for the same scripts.

The golden files under ``golden/`` were produced by the real ``azmlinfsrv`` with ``tests/serving/golden/generate.sh``
(versions in ``golden/VERSIONS.txt``), with SERVICE_NAME="golden service" and SERVICE_VERSION="2.5".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serving_helpers import HERE, SCRIPTS

GOLDEN = HERE / "golden"
GOLDEN_ENV = {"SERVICE_NAME": "golden service", "SERVICE_VERSION": "2.5"}
SCRIPTS_WITH_GOLDEN = ("schema_score", "text_score", "mixed_schema_score")


def golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


@pytest.mark.parametrize("script", SCRIPTS_WITH_GOLDEN)
@pytest.mark.parametrize("version", ["2", "3", "3.1"])
def test_swagger_matches_azmlinfsrv(script_client, script: str, version: str) -> None:
    client = script_client(f"{script}.py", **GOLDEN_ENV)
    response = client.get(f"/swagger.json?version={version}")
    expected = golden(f"{script}.swagger{version}.json")
    if "message" in expected:  # azmlinfsrv answered 404 {"message": ...}; we answer 404 {"error": ...}
        assert response.status_code == 404
        assert response.json() == {"error": expected["message"]}
    else:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == expected


@pytest.mark.parametrize("script", SCRIPTS_WITH_GOLDEN)
def test_unknown_version_names_supported_versions(script_client, script: str) -> None:
    client = script_client(f"{script}.py", **GOLDEN_ENV)
    response = client.get("/swagger.json?version=4")
    assert response.status_code == 404
    assert response.json() == {"error": golden(f"{script}.swagger-unknown.json")["message"]}


def test_unsupported_version_message() -> None:
    assert golden("mixed_schema_score.swagger2.json") == {
        "message": "Swagger version [2] is not supported for the scoring script. Supported swagger versions: [3, 3.1]."
    }


@pytest.mark.parametrize(("alias", "canonical"), [("2.0", "2"), ("3.0", "3"), (None, "2")])
def test_version_aliases_and_default(script_client, alias: str | None, canonical: str) -> None:
    client = script_client("schema_score.py", **GOLDEN_ENV)
    url = "/swagger.json" if alias is None else f"/swagger.json?version={alias}"
    response = client.get(url)
    assert response.status_code == 200
    assert response.json() == golden(f"schema_score.swagger{canonical}.json")


def test_path_prefix_applies_to_paths(script_client) -> None:
    client = script_client("text_score.py", SERVICE_PATH_PREFIX="/models/v1/")
    paths = client.get("/swagger.json?version=3").json()["paths"]
    assert sorted(paths) == ["/models/v1/", "/models/v1/score", "/models/v1/swagger.json"]


def test_user_swagger_files_override(script_client, tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text((SCRIPTS / "text_score.py").read_text())
    (tmp_path / "swagger3.json").write_text('{"openapi": "3.0.3", "info": {"title": "mine"}}')
    (tmp_path / "swagger.json").write_text('{"swagger": "2.0", "info": {"title": "mine v2"}}')
    client = script_client("score.py", app_root=tmp_path)
    assert client.get("/swagger.json?version=3").json() == {"openapi": "3.0.3", "info": {"title": "mine"}}
    assert client.get("/swagger.json").json() == {"swagger": "2.0", "info": {"title": "mine v2"}}
    assert client.get("/swagger.json?version=3.1").json()["openapi"] == "3.1.0"  # no override: generated
