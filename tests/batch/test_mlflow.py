"""MLflow models with no scoring code: CSV and Parquet files scored through pyfunc by the runner."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from batch_helpers import REPO

pytest.importorskip("sklearn")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mlflow 3 warns about its own type hints on import; not ours to fix
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """y = 2a + b, saved one folder below the model dir (as Azure ML mounts registered models)."""
    from sklearn.linear_model import LinearRegression

    features = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]})
    model = LinearRegression().fit(features, 2 * features["a"] + features["b"])
    root = tmp_path_factory.mktemp("azureml-models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow_sklearn.save_model(
            model, str(root / "linear"), serialization_format=mlflow_sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
        )
    return root


def test_csv_and_parquet_files_get_predictions_with_their_file_name(model_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    pd.DataFrame({"a": [1.0, 10.0], "b": [1.0, 0.0]}).to_csv(inputs / "one.csv", index=False)
    pd.DataFrame({"a": [0.5], "b": [2.0]}).to_parquet(inputs / "two.parquet")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.batch.runner",
            "--input",
            str(inputs),
            "--output-dir",
            str(out),
            "--model-dir",
            str(model_dir),
            "--mini-batch-size",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    result = pd.read_csv(out / "predictions.csv")
    assert list(result.columns) == ["file", "prediction"]
    assert list(result["file"]) == ["one.csv", "one.csv", "two.parquet"]
    np.testing.assert_allclose(result["prediction"], [3.0, 20.0, 3.0], atol=1e-6)
    summary = json.loads((out / "predictions.summary.json").read_text())
    assert summary["status"] == "Completed"
    assert summary["rows"] == 3


def test_unsupported_file_type_fails_the_mini_batch_with_a_reason(model_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "notes.txt").write_text("x")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.batch.runner",
            "--input",
            str(inputs),
            "--output-dir",
            str(out),
            "--model-dir",
            str(model_dir),
            "--max-retries",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "predictions.summary.json").read_text())
    assert summary["failures"] == [
        {
            "mini_batch": 0,
            "failed_items": 1,
            "attempts": 1,
            "reason": f"ScoringCodeError: {inputs / 'notes.txt'}: got suffix '.txt'; MLflow batch scoring reads "
            ".csv or .parquet",
        }
    ]
