"""Loading batch scoring code: an Azure ML entry script, or an MLflow model with no scoring code.

Both expose the Azure ML batch contract: ``init()`` once per worker process, then ``run(mini_batch)`` with
a list of file paths, returning a list (one element per item) or a pandas DataFrame.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ScoringCodeError(RuntimeError):
    """The scoring code cannot be loaded or does not follow the batch contract."""


class BatchScorer:
    """The pair of callables the runner needs."""

    def __init__(self, init: Callable[[], Any], run: Callable[[list[str]], Any], name: str) -> None:
        """Wrap the callables.

        Args:
            init: called once per worker process before the first mini-batch.
            run: called once per mini-batch with the list of file paths.
            name: shown in logs and errors (the script path or "mlflow:<model dir>").
        """
        self.init = init
        self.run = run
        self.name = name


def load_entry_script(path: str) -> BatchScorer:
    """Import an Azure ML batch scoring script by path, as Azure does (its folder first on ``sys.path``).

    Raises:
        ScoringCodeError: the file is missing, fails to import, or has no callable ``run``.
    """
    script = Path(path).resolve()
    if not script.is_file():
        raise ScoringCodeError(f"entry_script: got {path!r}; no such file")
    folder = str(script.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"batch_entry_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise ScoringCodeError(f"entry_script: got {path!r}; not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ScoringCodeError(f"entry_script: {path}: import failed: {type(e).__name__}: {e}") from e
    run = getattr(module, "run", None)
    if not callable(run):
        raise ScoringCodeError(f"entry_script: {path}: defines no run(mini_batch) function")
    init = getattr(module, "init", None)
    return BatchScorer(init if callable(init) else (lambda: None), run, str(script))


class MlflowTabularScorer:
    """Scores CSV and Parquet files through ``mlflow.pyfunc``; each prediction row keeps its source file.

    Azure ML does the same for MLflow models in batch deployments: the input columns are the model's
    signature, predictions come back in a ``prediction`` column, and ``file`` names the source file.
    """

    def __init__(self, model_dir: str) -> None:
        """Remember the model folder; loading happens in :meth:`init` (in the worker process)."""
        self.model_dir = model_dir
        self.model: Any = None

    def init(self) -> None:
        """Load the model (once per worker)."""
        import mlflow.pyfunc  # heavy import, only when an MLflow model is used

        self.model = mlflow.pyfunc.load_model(self.model_dir)

    def run(self, mini_batch: list[str]) -> Any:
        """Score every file of the mini-batch and return one DataFrame."""
        import pandas as pd

        frames = []
        for path in mini_batch:
            suffix = Path(path).suffix.lower()
            if suffix == ".csv":
                data = pd.read_csv(path)
            elif suffix in (".parquet", ".pq"):
                data = pd.read_parquet(path)
            else:
                raise ScoringCodeError(f"{path}: got suffix {suffix!r}; MLflow batch scoring reads .csv or .parquet")
            predictions = self.model.predict(data)
            frame = pd.DataFrame(predictions)
            if frame.shape[1] == 1:
                frame.columns = ["prediction"]
            frame.insert(0, "file", os.path.basename(path))
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["file", "prediction"])
        return pd.concat(frames, ignore_index=True)


def load_scorer(entry_script: str | None, model_dir: str | None) -> BatchScorer:
    """Pick the scoring code: the entry script when given, else the MLflow model in ``model_dir``.

    Raises:
        ScoringCodeError: neither an entry script nor an MLflow model (an ``MLmodel`` file) is there.
    """
    if entry_script:
        return load_entry_script(entry_script)
    if model_dir:
        candidates = [Path(model_dir), *sorted(p.parent for p in Path(model_dir).glob("*/MLmodel"))]
        for folder in candidates:
            if (folder / "MLmodel").is_file():
                scorer = MlflowTabularScorer(str(folder))
                return BatchScorer(scorer.init, scorer.run, f"mlflow:{folder}")
    raise ScoringCodeError(
        f"entry_script: got none and model_dir {model_dir!r} holds no MLmodel file; "
        "give a scoring script or an MLflow model"
    )
