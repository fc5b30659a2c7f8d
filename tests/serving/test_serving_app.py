"""The scoring app's HTTP contract (azmlinfsrv 1.5 compatible), in-process through ASGI."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from serving_helpers import SCRIPTS, AppClient, make_client

from contract.serving import ScoringSettings
from serving.errors import RunError, ScriptError
from serving.request_json import to_json
from serving.scorers import make_scorer

EXEC_MS = re.compile(r"^\d+\.\d{3}$")
SERVER_VERSION = "k8s-ml-endpoints/0.1.0"


def assert_score_headers(response, request_id: str | None = None) -> None:
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-ms-run-function-failed"] == "False"
    assert EXEC_MS.match(response.headers["x-ms-run-fn-exec-ms"])
    assert response.headers["x-ms-server-version"] == SERVER_VERSION
    if request_id is not None:
        assert response.headers["x-request-id"] == request_id
        assert response.headers["x-ms-request-id"] == request_id


# ---------------------------------------------------------------------------------------------------------------------
# Undecorated run(raw): text in, JSON out
# ---------------------------------------------------------------------------------------------------------------------


def test_text_post_json_body(script_client) -> None:
    client = script_client("text_score.py")
    response = client.post("/score", content=b'{"data": [1, 2, 3]}', headers={"x-request-id": "req-1"})
    assert response.status_code == 200
    assert response.json() == {"result": [2, 4, 6]}
    assert_score_headers(response, "req-1")
    assert "x-ms-client-request-id" not in response.headers


def test_text_post_plain_text_reaches_run_as_str(script_client) -> None:
    client = script_client("text_score.py")
    response = client.post("/score", content="héllo wörld".encode(), headers={"content-type": "text/plain"})
    assert response.status_code == 200
    assert response.json() == {"text": "héllo wörld", "length": 11}


def test_text_get_query_string_is_a_json_object(script_client) -> None:
    client = script_client("text_score.py")
    response = client.get("/score?a=1&a=2&b=x&c=[1,2]&d=null")
    assert response.status_code == 200
    assert response.json() == {"echo": {"a": [1, 2], "b": "x", "c": [1, 2], "d": None}}


def test_text_none_result_is_empty_object(script_client) -> None:
    client = script_client("text_score.py")
    response = client.post("/score", content=b"none")
    assert response.status_code == 200
    assert response.content == b"{}"


def test_text_invalid_utf8_is_400(script_client) -> None:
    client = script_client("text_score.py")
    response = client.post("/score", content=b"\xff\xfe")
    assert response.status_code == 400
    assert response.json() == {
        "error": "Input cannot be decoded as UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte"
    }


def test_run_exception_is_424_without_details_and_logged_with_request_id(script_client, caplog) -> None:
    client = script_client("text_score.py")
    with caplog.at_level(logging.ERROR, logger="serving.app"):
        response = client.post("/score", content=b"boom", headers={"x-request-id": "failing-request"})
    assert response.status_code == 424
    assert response.json() == {"error": "An unexpected error occurred in scoring script. Check the logs for more info."}
    assert response.headers["ms-azureml-model-error-statuscode"] == "500"
    assert response.headers["ms-azureml-model-error-reason"] == "model_error"
    assert response.headers["x-ms-run-function-failed"] == "True"
    assert response.headers["x-request-id"] == "failing-request"
    assert "secret detail" not in response.text
    assert "Traceback" not in response.text
    records = [r for r in caplog.records if "failing-request" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "secret detail that must not reach the client" in str(records[0].exc_info[1])


# ---------------------------------------------------------------------------------------------------------------------
# request_headers
# ---------------------------------------------------------------------------------------------------------------------


def test_request_headers_parameter(script_client) -> None:
    client = script_client("headers_score.py")
    response = client.post(
        "/score",
        content=b"payload",
        headers={"x-custom": "custom-value", "content-type": "text/plain", "x-request-id": "rid-7"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "data": "payload",
        "x-custom": "custom-value",
        "content-type": "text/plain",
        "request-id": "rid-7",
    }


# ---------------------------------------------------------------------------------------------------------------------
# inference-schema decorated run()
# ---------------------------------------------------------------------------------------------------------------------

SCHEMA_BODY = {
    "matrix": [[1, 2, 3], [4, 5, 6]],
    "frame": [{"name": "x", "age": 20}, {"name": "y", "age": 30}],
    "scale": 3,
}


def test_schema_numpy_pandas_standard_types(script_client) -> None:
    client = script_client("schema_score.py")
    response = client.post("/score", json=SCHEMA_BODY)
    assert response.status_code == 200
    assert response.json() == {"row_sums": [18.0, 45.0], "mean_age": 25.0, "types": ["ndarray", "DataFrame"]}
    assert_score_headers(response)


def test_schema_default_parameter_value(script_client) -> None:
    client = script_client("schema_score.py")
    body = {key: value for key, value in SCHEMA_BODY.items() if key != "scale"}
    response = client.post("/score", json=body)
    assert response.status_code == 200
    assert response.json()["row_sums"] == [6.0, 15.0]


def test_schema_get_query_maps_to_parameters(script_client) -> None:
    client = script_client("mixed_schema_score.py")
    response = client.get('/score?values=[1,"a",2]')
    assert response.status_code == 200
    assert response.json() == {"count": 3}


@pytest.mark.parametrize(
    ("content", "content_type", "status", "error"),
    [
        pytest.param(b"{}", "text/plain", 415, "Expects Content-Type to be application/json", id="not-json-type"),
        pytest.param(b"", "application/json", 400, "POST body is empty. Expecting a JSON dictionary.", id="empty"),
        pytest.param(b"[1, 2]", "application/json", 400, "POST body should be a JSON dictionary.", id="not-object"),
        pytest.param(
            b'{"matrix": [[1]]',
            "application/json",
            400,
            "POST body could not be decoded as JSON: Expecting ',' delimiter: line 1 column 17 (char 16)",
            id="bad-json",
        ),
        pytest.param(
            b'{"frame": []}',
            "application/json",
            400,
            "A value is not provided for the 'matrix' parameter.",
            id="missing-key",
        ),
    ],
)
def test_schema_input_errors(script_client, content: bytes, content_type: str, status: int, error: str) -> None:
    client = script_client("schema_score.py")
    response = client.post("/score", content=content, headers={"content-type": content_type, "x-request-id": "e1"})
    assert response.status_code == status
    assert response.json() == {"error": error}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "e1"


def test_schema_accepts_json_suffix_content_type(script_client) -> None:
    client = script_client("schema_score.py")
    response = client.post(
        "/score", content=json.dumps(SCHEMA_BODY).encode(), headers={"content-type": "application/vnd.x+json"}
    )
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------------------------------
# async run
# ---------------------------------------------------------------------------------------------------------------------


def test_async_run_is_awaited_on_the_event_loop(script_client) -> None:
    client = script_client("async_score.py")
    response = client.post("/score", content=b"abc")
    assert response.status_code == 200
    # The test client runs the loop in the main thread: no hop to the run thread pool ("run_N").
    assert response.json() == {"upper": "ABC", "thread": "MainThread"}


def test_sync_run_executes_in_the_run_thread_pool(script_client, tmp_path) -> None:
    script = tmp_path / "thread_score.py"
    script.write_text(
        "import threading\n\ndef init():\n    pass\n\ndef run(raw):\n    return threading.current_thread().name\n"
    )
    client = script_client("thread_score.py", app_root=tmp_path)
    response = client.post("/score", content=b"x")
    assert response.status_code == 200
    assert response.json().startswith("run_")


# ---------------------------------------------------------------------------------------------------------------------
# @rawhttp
# ---------------------------------------------------------------------------------------------------------------------


def _png(width: int = 4, height: int = 2) -> bytes:
    image = Image.new("RGB", (width, height), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))  # white top-left pixel: after the flip it is top-right
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_rawhttp_multipart_upload_returns_image(script_client) -> None:
    client = script_client("rawhttp_score.py")
    response = client.post(
        "/score",
        files={"image": ("cat.png", _png(), "image/png")},
        data={"label": "cat"},
        headers={"x-request-id": "img-1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-upload"] == "cat.png;cat"
    assert response.headers["x-ms-run-function-failed"] == "False"
    assert response.headers["x-request-id"] == "img-1"
    assert EXEC_MS.match(response.headers["x-ms-run-fn-exec-ms"])
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "L"
    assert image.size == (4, 2)
    assert image.getpixel((3, 0)) == 255
    assert image.getpixel((0, 0)) == 0


def test_rawhttp_missing_file_answers_user_status(script_client) -> None:
    client = script_client("rawhttp_score.py")
    response = client.post("/score", data={"label": "cat"})
    assert response.status_code == 400
    assert response.json() == {"error": "no file named image", "form": {"label": "cat"}}
    assert response.headers["x-ms-run-function-failed"] == "False"


def test_rawhttp_get_args(script_client) -> None:
    client = script_client("rawhttp_score.py")
    response = client.get("/score?k=1&k=2&z=a")
    assert response.status_code == 200
    assert response.json() == {"args": {"k": ["1", "2"], "z": ["a"]}, "method": "GET"}


def test_rawhttp_user_5xx_marks_run_function_failed(script_client, tmp_path) -> None:
    (tmp_path / "fail_raw.py").write_text(
        "from azureml.contrib.services.aml_request import rawhttp\n"
        "from azureml.contrib.services.aml_response import AMLResponse\n\n"
        "def init():\n    pass\n\n"
        "@rawhttp\ndef run(request):\n    return AMLResponse('model is warming up', 503, {'Retry-After': '2'})\n"
    )
    client = script_client("fail_raw.py", app_root=tmp_path)
    response = client.post("/score", content=b"x")
    assert response.status_code == 503
    assert response.text == "model is warming up"
    assert response.headers["x-ms-run-function-failed"] == "True"
    assert response.headers["retry-after"] == "2"


# ---------------------------------------------------------------------------------------------------------------------
# Routes, request ids
# ---------------------------------------------------------------------------------------------------------------------


def test_liveness_get_and_head(script_client) -> None:
    client = script_client("text_score.py")
    response = client.get("/")
    assert (response.status_code, response.text) == (200, "Healthy")
    head = client.request("HEAD", "/")
    assert head.status_code == 200
    assert head.content == b""


def test_options_score_is_200_empty(script_client) -> None:
    client = script_client("text_score.py")
    response = client.request("OPTIONS", "/score")
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        pytest.param("PUT", "/score", 405, "Method PUT is not allowed on /score", id="put-score"),
        pytest.param("POST", "/swagger.json", 405, "Method POST is not allowed on /swagger.json", id="post-swagger"),
        pytest.param("DELETE", "/", 405, "Method DELETE is not allowed on /", id="delete-root"),
        pytest.param("GET", "/nope", 404, "Not found: /nope", id="unknown-path"),
    ],
)
def test_route_errors(script_client, method: str, path: str, status: int, error: str) -> None:
    client = script_client("text_score.py")
    response = client.request(method, path)
    assert response.status_code == status
    assert response.json() == {"error": error}


def test_request_id_generated_when_absent(script_client) -> None:
    client = script_client("text_score.py")
    response = client.post("/score", content=b"1")
    generated = response.headers["x-request-id"]
    assert str(uuid.UUID(generated)) == generated
    assert response.headers["x-ms-request-id"] == generated


def test_client_request_id_echoed(script_client) -> None:
    client = script_client("text_score.py")
    response = client.post(
        "/score", content=b"1", headers={"x-request-id": "r1", "x-ms-client-request-id": "c1", "TraceId": "t1"}
    )
    assert response.headers["x-request-id"] == "r1"
    assert response.headers["x-ms-client-request-id"] == "c1"
    assert response.headers["x-ms-request-id"] == "c1"
    assert response.headers["traceid"] == "t1"


def test_legacy_ms_request_id_becomes_client_id(script_client) -> None:
    client = script_client("text_score.py")
    response = client.post("/score", content=b"1", headers={"x-request-id": "r1", "x-ms-request-id": "legacy"})
    assert response.headers["x-ms-request-id"] == "legacy"
    assert response.headers["x-ms-client-request-id"] == "legacy"


@pytest.mark.parametrize(
    ("header", "error"),
    [
        pytest.param("x-request-id", "x-request-id must not exceed 100 characters", id="request-id"),
        pytest.param(
            "x-ms-client-request-id",
            "x-ms-request-id and x-ms-client-request-id must not exceed 100 characters",
            id="client-request-id",
        ),
    ],
)
def test_request_id_over_100_chars_is_431(script_client, header: str, error: str) -> None:
    client = script_client("text_score.py")
    ok = client.post("/score", content=b"1", headers={header: "a" * 100})
    assert ok.status_code == 200
    response = client.post("/score", content=b"1", headers={header: "a" * 101})
    assert response.status_code == 431
    assert response.json() == {"error": error}
    assert response.headers["x-ms-server-version"] == SERVER_VERSION
    assert "x-request-id" not in response.headers  # as azmlinfsrv: no id is echoed when one is invalid


def test_server_version_header_can_be_disabled(script_client) -> None:
    client = script_client("text_score.py", SERVER_VERSION_LOG_RESPONSE_ENABLED="false")
    response = client.post("/score", content=b"1")
    assert "x-ms-server-version" not in response.headers


def test_cors_origins(script_client) -> None:
    client = script_client("text_score.py", AML_CORS_ORIGINS="https://a.example, https://b.example")
    allowed = client.post("/score", content=b"1", headers={"origin": "https://b.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://b.example"
    other = client.post("/score", content=b"1", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_score_before_init_finished_is_503() -> None:
    client, _scorer = make_client({"AML_APP_ROOT": str(SCRIPTS), "AZUREML_ENTRY_SCRIPT": "text_score.py"}, load=False)
    response = client.post("/score", content=b"1")
    assert response.status_code == 503
    assert response.json() == {"error": "the scoring script is still initialising"}
    assert client.get("/").status_code == 200


# ---------------------------------------------------------------------------------------------------------------------
# Loading the entry script
# ---------------------------------------------------------------------------------------------------------------------


def _load(script: str) -> None:
    scorer = make_scorer(ScoringSettings.from_env({"AML_APP_ROOT": str(SCRIPTS), "AZUREML_ENTRY_SCRIPT": script}))
    scorer.load()


def test_init_failure_raises_script_error_naming_the_cause() -> None:
    with pytest.raises(ScriptError) as info:
        _load("init_fails_score.py")
    assert str(info.value) == (
        f"entry script {SCRIPTS / 'init_fails_score.py'}: init() failed: RuntimeError: model file model.pkl is missing"
    )


def test_init_oserror_keeps_the_file_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))  # what the script reads
    env = {
        "AML_APP_ROOT": str(SCRIPTS),
        "AZUREML_ENTRY_SCRIPT": "missing_model_score.py",
        "AZUREML_MODEL_DIR": str(tmp_path),
    }
    with pytest.raises(ScriptError) as info:
        make_scorer(ScoringSettings.from_env(env)).load()
    assert str(info.value) == (
        f"entry script {SCRIPTS / 'missing_model_score.py'}: init() failed: FileNotFoundError: [Errno 2] No such file"
        f" or directory: '{tmp_path / 'weights' / 'model.pkl'}'"
    )


def test_missing_run_raises_script_error() -> None:
    with pytest.raises(ScriptError) as info:
        _load("no_run_score.py")
    assert str(info.value) == f"entry script {SCRIPTS / 'no_run_score.py'}: no run() function defined"


def test_missing_script_raises_script_error() -> None:
    with pytest.raises(ScriptError) as info:
        _load("absent.py")
    assert str(info.value) == f"entry script {SCRIPTS / 'absent.py'}: no such file"


def test_no_script_and_no_mlflow_model(tmp_path) -> None:
    with pytest.raises(ScriptError) as info:
        make_scorer(ScoringSettings.from_env({"AML_APP_ROOT": str(tmp_path), "AZUREML_MODEL_DIR": str(tmp_path)}))
    assert str(info.value) == (
        f"AZUREML_ENTRY_SCRIPT is not set and AZUREML_MODEL_DIR={str(tmp_path)!r} holds no MLmodel file; "
        "set an entry script or point the model directory at an MLflow model"
    )


def test_bad_worker_count_env_names_variable() -> None:
    with pytest.raises(
        ValueError, match=r"^environment variable WORKER_COUNT: got 'two'; expected a positive integer$"
    ):
        ScoringSettings.from_env({"WORKER_COUNT": "two"})


# ---------------------------------------------------------------------------------------------------------------------
# Output serialisation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, b"{}", id="none"),
        pytest.param(np.float32(1.5), b"1.5", id="numpy-scalar"),
        pytest.param(np.int64(7), b"7", id="numpy-int"),
        pytest.param(np.array([[1, 2], [3, 4]]), b"[[1,2],[3,4]]", id="numpy-array"),
        pytest.param(np.array([[1, 2], [3, 4]]).T, b"[[1,3],[2,4]]", id="numpy-non-contiguous"),
        pytest.param(np.array(["a", None], dtype=object), b'["a",null]', id="numpy-object"),
        pytest.param(pd.Series([1.5, 2.5]), b"[1.5,2.5]", id="pandas-series"),
        pytest.param(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), b'[{"a":1,"b":"x"},{"a":2,"b":"y"}]', id="frame"),
        pytest.param({"p": np.array([0.25])}, b'{"p":[0.25]}', id="nested"),
        pytest.param("text", b'"text"', id="str"),
    ],
)
def test_to_json(value, expected: bytes) -> None:
    assert to_json(value) == expected


def test_to_json_unserialisable_is_run_error() -> None:
    with pytest.raises(
        RunError,
        match=r"^run\(\) returned a value that cannot be serialised as JSON \(Type is not JSON serializable: object\)$",
    ):
        to_json(object())


def test_unserialisable_output_is_424(script_client, tmp_path) -> None:
    (tmp_path / "obj_score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return object()\n")
    client: AppClient = script_client("obj_score.py", app_root=tmp_path)
    response = client.post("/score", content=b"x")
    assert response.status_code == 424
    assert response.json() == {
        "error": "run() returned a value that cannot be serialised as JSON (Type is not JSON serializable: object)"
    }


def test_source_directory_is_importable(script_client, tmp_path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "featurize_helper_7f3.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "score.py").write_text(
        "import featurize_helper_7f3\n\ndef init():\n    pass\n\n"
        "def run(raw):\n    return featurize_helper_7f3.double(int(raw))\n"
    )
    client = script_client("score.py", app_root=tmp_path, AZUREML_SOURCE_DIRECTORY="src")
    response = client.post("/score", content=b"21")
    assert response.status_code == 200
    assert response.json() == 42
