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
    import mlflow.pyfunc  # noqa: F401

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


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"input_data": {"columns": COLUMNS, "index": [0, 1], "data": ROWS}}, id="azure-input-data"),
        pytest.param({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, id="dataframe-split"),
        pytest.param({"dataframe_records": [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]}, id="records"),
        pytest.param({"instances": [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]}, id="instances"),
        pytest.param({"input_data": {"columns": COLUMNS, "data": [[1, 1, 1, 1], [5, 5, 5, 5]]}}, id="ints-coerced"),
    ],
)
def test_predictions(client, body: dict) -> None:
    response = client.post("/score", json=body, headers={"x-request-id": "m1"})
    assert response.status_code == 200
    assert response.json() == {"predictions": [0, 1]}
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
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": {"type": "integer", "format": "int64"}}},
        "required": ["predictions"],
    }
    assert client.get("/swagger.json?version=2").json()["swagger"] == "2.0"
