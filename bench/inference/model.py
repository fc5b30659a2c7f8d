"""Train the benchmark's scikit-learn model and save it twice: ``model.pkl`` (joblib) and an MLflow model.

Usage: python bench/inference/model.py OUT_DIR   (writes OUT_DIR/azure/model.pkl and OUT_DIR/mlflow/; with xgboost
installed also OUT_DIR/mlflow-xgboost/, an XGBoost classifier on the same data, for ``ours-mlflow-xgboost``)
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]


def train() -> tuple[LogisticRegression, pd.DataFrame]:
    """A 3-class logistic regression on 300 synthetic iris-like rows (seeded)."""
    rng = np.random.default_rng(42)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
    features = np.vstack([rng.normal(center, 0.3, size=(100, 4)) for center in centers])
    labels = np.repeat([0, 1, 2], 100)
    frame = pd.DataFrame(features, columns=COLUMNS)
    return LogisticRegression(max_iter=500).fit(frame.to_numpy(), labels), frame


def main(out: Path) -> None:
    model, frame = train()
    (out / "azure").mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "azure" / "model.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow.sklearn
        from mlflow.models import infer_signature

        mlflow_dir = out / "mlflow"
        if not (mlflow_dir / "MLmodel").exists():
            mlflow.sklearn.save_model(
                model,
                str(mlflow_dir),
                signature=infer_signature(frame, model.predict(frame.to_numpy())),
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            )
        xgboost_dir = out / "mlflow-xgboost"
        if not (xgboost_dir / "MLmodel").exists():
            try:
                import mlflow.xgboost
                import xgboost
            except ImportError:
                pass
            else:
                labels = model.predict(frame.to_numpy())
                classifier = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(frame.to_numpy(), labels)
                mlflow.xgboost.save_model(
                    classifier, str(xgboost_dir), signature=infer_signature(frame, classifier.predict(frame))
                )
    row = np.asarray([ROW])
    model.predict(row)
    start = time.perf_counter()
    for _ in range(2000):
        model.predict(row)
    per_call_us = (time.perf_counter() - start) / 2000 * 1e6
    (out / "predict_us.txt").write_text(f"{per_call_us:.1f}\n")
    print(f"model saved under {out}; predict() on one row: {per_call_us:.1f} us; prediction {model.predict(row)[0]}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
