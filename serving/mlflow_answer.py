"""The answer of an MLflow model with no scoring code, in the shape the server each request format comes from gives.

* ``input_data`` (Azure ML's format: a list for tensors, ``{"columns", "index", "data"}`` for a DataFrame, a
  ``{name: list}`` for named tensors) is answered as Azure ML's no-code scorer answers it: the predictions
  themselves, made JSON-able by MLflow's ``_get_jsonable_obj(predictions, pandas_orient="records")`` (an array
  -> a list, a DataFrame -> a list of row objects, a Series -> a list of one-key row objects, a dict of arrays ->
  a dict of lists): ``[1, 0]``, ``[{"label": 1}]``.
* ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` (MLflow's formats, which Azure's
  no-code scorer does not read) are answered as MLflow's scoring server (``mlflow models serve``) answers them:
  ``{"predictions": <the same JSON-able value>}``.

Kept apart from how the predictions are computed (``serving.mlflow_model``): this module only shapes them.
"""

from __future__ import annotations

from typing import Any

AZURE_FORMAT = "input_data"
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def request_format(body: dict[str, Any]) -> str:
    """The request format of a parsed body: ``input_data`` when present, else the MLflow format key it holds."""
    if AZURE_FORMAT in body:
        return AZURE_FORMAT
    return next((key for key in MLFLOW_FORMATS if key in body), AZURE_FORMAT)


def jsonable(predictions: Any) -> Any:
    """What both servers serialise: MLflow's own conversion (pandas as records, numpy as lists)."""
    from mlflow.pyfunc.scoring_server import _get_jsonable_obj  # the function both servers call

    return _get_jsonable_obj(predictions, pandas_orient="records")


def answer(fmt: str, predictions: Any) -> Any:
    """The response body (before JSON serialisation) for a request of format ``fmt``.

    Args:
        fmt: ``input_data`` or one of :data:`MLFLOW_FORMATS` (see :func:`request_format`).
        predictions: What the model's ``predict`` returned.
    """
    value = jsonable(predictions)
    return value if fmt == AZURE_FORMAT else {"predictions": value}
