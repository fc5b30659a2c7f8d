"""Which scorer serves a deployment: its entry script (``serving.scoring.ScriptScorer``) or, with none, the MLflow
model found in ``AZUREML_MODEL_DIR`` (``serving.mlflow_model.MlflowScorer``).

A module of its own so that ``serving.scoring`` and ``serving.mlflow_model`` import one way (mlflow_model ->
scoring), never in a circle.
"""

from __future__ import annotations

from contract.model_layout import find_mlflow_model
from contract.serving import ScoringSettings
from serving.errors import ScriptError
from serving.scoring import Scorer, ScriptScorer


def make_scorer(settings: ScoringSettings) -> Scorer:
    """Pick the scorer: the entry script when one is set, else an MLflow model found in the model folder.

    Raises:
        ScriptError: neither an entry script nor an ``MLmodel`` file under ``AZUREML_MODEL_DIR``.
    """
    if settings.entry_script:
        return ScriptScorer(settings)
    from serving.mlflow_model import MlflowScorer  # imports mlflow: only when there is no entry script

    model_path = find_mlflow_model(settings.model_dir)
    if model_path is None:
        raise ScriptError(
            f"AZUREML_ENTRY_SCRIPT is not set and AZUREML_MODEL_DIR={settings.model_dir!r} holds no MLmodel file; "
            "set an entry script or point the model directory at an MLflow model"
        )
    return MlflowScorer(settings, model_path)
