"""MLflow models with no scoring script: a scikit-learn model saved by ``mlflow.sklearn.save_model``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_helpers import make_client

pytest.importorskip("sklearn")
with warnings.catch_warnings():
    # mlflow 3 warns about its own type hints while importing mlflow.pyfunc; not ours to fix.
    warnings.simplefilter("ignore")
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    import mlflow.pyfunc

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def mlflow_model_dir(tmp_path_factory) -> Path:
    """A logistic regression on a tiny separable data set, saved with a signature, one folder below the model dir."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 0.1, size=(20, 4))
    large = rng.normal(5.0, 0.1, size=(20, 4))
    features = pd.DataFrame(np.vstack([small, large]), columns=COLUMNS)
    labels = np.array([0] * 20 + [1] * 20)
    model = LogisticRegression().fit(features, labels)
    root = tmp_path_factory.mktemp("azureml-models")
    path = root / "iris-model"
    mlflow_sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(features, model.predict(features)),
        input_example=features[:2],
        serialization_format=mlflow_sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    return root


@pytest.fixture(scope="module")
def client(mlflow_model_dir: Path, tmp_path_factory):
    app_root = tmp_path_factory.mktemp("app")
    client, scorer = make_client({"AML_APP_ROOT": str(app_root), "AZUREML_MODEL_DIR": str(mlflow_model_dir)})
    yield client
    scorer.close()


ROWS = [[1.0, 1.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]]


RECORDS = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]


# Azure's no-code scorer answers ``input_data`` with the bare predictions; MLflow's formats get MLflow's
# ``{"predictions": ...}`` (mlflow models serve). Bytes, not parsed JSON: the shape is the contract.
@pytest.mark.parametrize(
    ("body", "answer"),
    [
        pytest.param({"input_data": {"columns": COLUMNS, "index": [0, 1], "data": ROWS}}, b"[0,1]", id="input-split"),
        pytest.param(
            {"input_data": {"columns": COLUMNS, "data": [[1, 1, 1, 1], [5, 5, 5, 5]]}},
            b"[0,1]",
            id="input-split-ints-coerced",
        ),
        pytest.param({"input_data": RECORDS}, b"[0,1]", id="input-records"),
        pytest.param(
            {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, b'{"predictions":[0,1]}', id="dataframe-split"
        ),
        pytest.param({"dataframe_records": RECORDS}, b'{"predictions":[0,1]}', id="dataframe-records"),
        pytest.param({"instances": RECORDS}, b'{"predictions":[0,1]}', id="instances"),
        pytest.param(
            {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}, b'{"predictions":[0,1]}', id="inputs"
        ),
    ],
)
def test_predictions(client, body: dict, answer: bytes) -> None:
    response = client.post("/score", json=body, headers={"x-request-id": "m1"})
    assert response.status_code == 200, response.text
    assert response.content == answer
    assert response.headers["x-request-id"] == "m1"
    assert response.headers["x-ms-run-function-failed"] == "False"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        pytest.param(
            {"data": ROWS},
            400,
            "the body must hold exactly one of input_data, dataframe_split, dataframe_records, instances, inputs; "
            "got keys ['data']",
            id="unknown-format",
        ),
        pytest.param([1, 2], 400, "POST body should be a JSON dictionary.", id="not-object"),
    ],
)
def test_bad_requests(client, body, status: int, error: str) -> None:
    response = client.post("/score", json=body)
    assert response.status_code == status
    assert response.json() == {"error": error}


def test_missing_column_is_400_naming_it(client) -> None:
    body = {"input_data": {"columns": COLUMNS[:3], "data": [[1.0, 1.0, 1.0]]}}
    response = client.post("/score", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("the input does not match the model signature: ")
    assert "petal_width" in error


def test_string_in_double_column_is_400(client) -> None:
    body = {"input_data": {"columns": COLUMNS, "data": [["a", 1.0, 1.0, 1.0]]}}
    response = client.post("/score", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("the input does not match the model signature: ")


def test_non_json_content_type_is_415(client) -> None:
    response = client.post("/score", content=b"1,2,3,4", headers={"content-type": "text/csv"})
    assert response.status_code == 415
    assert response.json() == {"error": "Expects Content-Type to be application/json"}


def test_get_is_405(client) -> None:
    response = client.get("/score")
    assert response.status_code == 405
    assert response.json() == {"error": "Method GET is not allowed on /score for MLflow models; use POST"}


def test_swagger_from_signature(client) -> None:
    doc = client.get("/swagger.json?version=3").json()
    service_input = doc["components"]["schemas"]["ServiceInput"]
    assert service_input["properties"]["input_data"]["properties"]["columns"]["example"] == COLUMNS
    assert service_input["properties"]["input_data"]["properties"]["data"]["items"]["items"] == {
        "anyOf": [{"type": "number", "format": "double"}] * 4
    }
    assert doc["components"]["schemas"]["ServiceOutput"] == {
        "type": "array",
        "items": {"type": "integer", "format": "int64"},
    }
    assert client.get("/swagger.json?version=2").json()["swagger"] == "2.0"


# mlflow warns at class creation that predict() has no type hints (hints would switch its own validation on).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")

    class _Doubler(mlflow.pyfunc.PythonModel):
        """A tensor model: answers twice its input."""

        def predict(self, context, model_input, params=None):
            return np.asarray(model_input) * 2

    class _Labeller(mlflow.pyfunc.PythonModel):
        """A tabular model answering a DataFrame (one ``label`` column)."""

        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"label": (model_input["x"] > 2).astype(int)})


def _pyfunc_client(tmp_path: Path, python_model, example_in, example_out):
    from mlflow.models import infer_signature

    root = tmp_path / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mlflow's advice about pickling and examples; not what is tested
        mlflow.pyfunc.save_model(
            str(root / "m"),
            python_model=python_model,
            signature=infer_signature(example_in, example_out),
            input_example=example_in,
        )
    app_root = tmp_path / "app"
    app_root.mkdir()
    return make_client({"AML_APP_ROOT": str(app_root), "AZUREML_MODEL_DIR": str(root)})


def test_tensor_model_answers_input_data_list_as_azure(tmp_path) -> None:
    client, scorer = _pyfunc_client(tmp_path, _Doubler(), np.array([[1.0, 2.0]]), np.array([[2.0, 4.0]]))
    try:
        response = client.post("/score", json={"input_data": [[1.0, 2.0], [3.0, 4.0]]})
        assert response.status_code == 200, response.text
        assert response.content == b"[[2.0,4.0],[6.0,8.0]]"
        response = client.post("/score", json={"inputs": [[1.0, 2.0]]})
        assert response.content == b'{"predictions":[[2.0,4.0]]}'
    finally:
        scorer.close()


def test_dataframe_answer_is_records(tmp_path) -> None:
    example = pd.DataFrame({"x": [1.0, 3.0]})
    client, scorer = _pyfunc_client(tmp_path, _Labeller(), example, pd.DataFrame({"label": [0, 1]}))
    try:
        response = client.post(
            "/score", json={"input_data": {"columns": ["x"], "index": [0, 1], "data": [[1.0], [3.0]]}}
        )
        assert response.status_code == 200, response.text
        assert response.content == b'[{"label":0},{"label":1}]'
        response = client.post("/score", json={"dataframe_records": [{"x": 1.0}, {"x": 3.0}]})
        assert response.content == b'{"predictions":[{"label":0},{"label":1}]}'
    finally:
        scorer.close()
