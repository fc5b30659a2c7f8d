"""The fast path of MLflow models with no scoring script: the native flavour's predict on arrays from the request.

``mlflow.pyfunc`` turns every request into a pandas DataFrame, enforces the signature column by column and then
calls the flavour's ``predict``; for a small scikit-learn model that costs ten times the prediction. Where it is
safe, this module calls the same ``predict`` (the function pyfunc would call, ``pyfunc_predict_fn`` included) on a
float64 array built straight from the JSON body, and gives the same answer as pyfunc: the same numbers, the same
JSON.

Safe means, checked once at load:

* the flavour is ``mlflow.sklearn``, ``mlflow.lightgbm`` (a model without pandas categorical features) or
  ``mlflow.xgboost`` (a ``Booster`` or scikit-learn API model without categorical features, whose feature names,
  if it has any, are the signature's); other flavours stay on pyfunc, each for the reason in :data:`PYFUNC_ONLY`
  (``mlflow.pytorch``: not verified, see there) or because they run user code (custom pyfunc models);
* the signature is tabular (column-based) and every column is a required ``double``;
* a probe (the model's saved input example, or synthetic rows) predicted both ways gives equal JSON.

The array is column-major (Fortran order), as the array pandas hands the model: a linear model's dot product then
runs the same BLAS kernel in the same order, so even the last bits of a float answer are pyfunc's (a row-major
array gives answers that differ in the last bit).

And per request: the body holds only ``input_data`` / ``dataframe_split`` (``columns`` equal to the signature's,
in order, ``data`` rows of that length) or ``dataframe_records`` (records with exactly the signature's names), no
``params``, and every value is a JSON number written as a float. The signature is enforced by these checks, without
a DataFrame. Anything else (ints, missing or extra columns, strings, nulls, params, other formats) goes through
pyfunc unchanged, so its answers and its error messages are pyfunc's.

A model fitted on a DataFrame (scikit-learn's ``feature_names_in_``) gets a DataFrame with the signature's columns,
built once per batch, as pyfunc would hand it.

XGBoost: pyfunc calls ``predict(DMatrix(frame), validate_features=True)`` on a ``Booster`` and
``predict(frame, validate_features=True)`` on a scikit-learn API model. The fast path calls the same ``predict`` of
a scikit-learn API model, and ``inplace_predict`` of a ``gbtree`` Booster (as the scikit-learn API's ``predict``
does), on a row-major float64 array, with ``validate_features=False``: that validation compares the booster's
feature names with the frame's columns, which the request checks hold to the signature's, so it is done once at
load. ``dart`` and ``gblinear`` Boosters get a ``DMatrix`` (in-place prediction of ``dart`` differs from its
``predict`` in the last bits; XGBoost's own scikit-learn API never predicts ``gblinear`` in place). XGBoost casts
every value to float32 whichever way it arrives, and a tree's answer for a row does not depend on the other rows,
so batching keeps the answers. One difference: a ``DMatrix`` refuses a value beyond float32's range where in-place
prediction takes it as infinity; rows holding one go to a ``DMatrix`` too (pyfunc's error; in a batch, the batcher
then predicts each request alone, so only that request fails).

XGBoost and LightGBM predict with one thread per call (the server's workers and run threads are the parallelism):
both would otherwise start or wake an OpenMP team of every core for each request's few rows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import orjson

logger = logging.getLogger("serving.mlflow")

SUPPORTED_FLAVOURS = ("mlflow.sklearn", "mlflow.lightgbm", "mlflow.xgboost")
# Flavours that could take a native path but stay on pyfunc on purpose, and why (logged at load).
PYFUNC_ONLY = {
    "mlflow.pytorch": (
        "not verified: torch is not installed where this server is built and tested (the PyPI wheel pulls several "
        "GB of CUDA wheels), so a native forward pass cannot be proven to give pyfunc's answers (a DataFrame of "
        "the float32 output, indexed like the input)"
    ),
}
_SPLIT_KEYS = frozenset(("columns", "data", "index"))
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class NativeTabular:
    """A tabular model's native ``predict`` with the request checks that stand in for pyfunc's schema enforcement.

    Build with :meth:`from_pyfunc`, which returns None where the fast path is not safe.
    """

    def __init__(
        self, predict_fn: Any, names: list[str], wants_frame: bool, flavour: str, order: Literal["C", "F"] = "F"
    ) -> None:
        """Wrap ``predict_fn`` for inputs with columns ``names``.

        Args:
            predict_fn: the native predict, called with one array (or DataFrame) of rows.
            names: the signature's columns, in order.
            wants_frame: hand ``predict_fn`` a DataFrame with columns ``names``.
            flavour: the MLflow flavour (for the log).
            order: the arrays' memory layout: ``F`` (column-major, as pandas hands them) or ``C`` (row-major).
        """
        self.predict_fn = predict_fn
        self.names = names
        self.width = len(names)
        self.wants_frame = wants_frame
        self.flavour = flavour
        self.order = order

    @classmethod
    def from_pyfunc(cls, model: Any) -> NativeTabular | None:
        """The fast path of a loaded ``mlflow.pyfunc`` model, or None (reason logged) when it is not safe."""
        why, native = _build(model)
        if native is None:
            logger.info("MLflow model: pyfunc path (%s)", why)
            return None
        probe = _probe(model, native)
        try:
            with warnings.catch_warnings():  # e.g. scikit-learn's feature-name notices: the answers are compared
                warnings.simplefilter("ignore")
                expected = _json(model.predict(_frame(probe, native.names)))
                got = _json(native.predict(probe))
        except Exception as ex:  # a probe the model refuses: no proof of equality, stay on pyfunc
            logger.info("MLflow model: pyfunc path (the equality probe failed: %r)", ex)
            return None
        if expected != got:
            logger.warning("MLflow model: pyfunc path (the native %s predict answers differently)", native.flavour)
            return None
        logger.info("MLflow model: native %s predict on arrays (same answers as pyfunc)", native.flavour)
        return native

    def parse(self, body: dict[str, Any]) -> np.ndarray | None:
        """The request's rows as a float64 array of shape (n, width), or None when pyfunc must handle the body."""
        if len(body) != 1:
            return None
        key, value = next(iter(body.items()))
        if key == "input_data" or key == "dataframe_split":
            if type(value) is not dict or not value.keys() <= _SPLIT_KEYS or value.get("columns") != self.names:
                return None
            rows = value.get("data")
            if type(rows) is not list or not rows:
                return None
            index = value.get("index")
            if index is not None and (type(index) is not list or len(index) != len(rows)):
                return None
            width = self.width
            for row in rows:
                if type(row) is not list or len(row) != width:
                    return None
                for cell in row:
                    if type(cell) is not float:
                        return None
            return np.array(rows, dtype=np.float64, order=self.order)
        if key == "dataframe_records":
            if type(value) is not list or not value:
                return None
            names, width = self.names, self.width
            table = []
            for record in value:
                if type(record) is not dict or len(record) != width:
                    return None
                try:
                    row = [record[name] for name in names]
                except KeyError:
                    return None
                for cell in row:
                    if type(cell) is not float:
                        return None
                table.append(row)
            return np.array(table, dtype=np.float64, order=self.order)
        return None

    def predict(self, rows: np.ndarray) -> Any:
        """The native predict on ``rows`` (a DataFrame of them for models fitted on one)."""
        if self.wants_frame:
            return self.predict_fn(_frame(rows, self.names))
        return self.predict_fn(rows)

    def predict_batch(self, items: list[np.ndarray]) -> list[Any]:
        """Predict several requests' rows in one call; one answer per request (its rows' slice of the result).

        Raises:
            ValueError: the model answered something other than one array row per input row (the batcher then
                predicts each request alone).
        """
        rows = items[0] if len(items) == 1 else np.asarray(np.concatenate(items), order=self.order)
        answer = self.predict(rows)
        if not isinstance(answer, np.ndarray) or answer.ndim == 0 or len(answer) != len(rows):
            raise ValueError(f"the model answered {type(answer).__name__} for {len(rows)} rows; cannot split it")
        out = []
        start = 0
        for item in items:
            end = start + len(item)
            out.append(answer[start:end])
            start = end
        return out


def refusal(flavour: str) -> str | None:
    """Why a flavour never takes the fast path, or None when it may (the checks at load still apply)."""
    if flavour in PYFUNC_ONLY:
        return f"flavour {flavour}: {PYFUNC_ONLY[flavour]}"
    if flavour not in SUPPORTED_FLAVOURS:
        return f"flavour {flavour} has no native fast path"
    return None


def _build(model: Any) -> tuple[str, NativeTabular | None]:
    flavour = str(getattr(model, "loader_module", None))
    why = refusal(flavour)
    if why is not None:
        return why, None
    schema = model.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return "the signature is not column-based", None
    names = list(schema.input_names())
    for spec in schema.inputs:
        type_name = getattr(getattr(spec, "type", None), "name", None)
        if type_name != "double" or not getattr(spec, "required", True):
            return f"column {spec.name!r} is {type_name} (optional: {not spec.required}); only required doubles", None
    params_schema = model.metadata.get_params_schema()
    if params_schema is not None and params_schema.params:
        return "the model takes params", None
    try:
        raw = model.get_raw_model()
    except Exception as ex:
        return f"no raw model ({ex!r})", None
    if flavour == "mlflow.xgboost":
        return _xgboost(raw, names)
    if flavour == "mlflow.lightgbm":
        return _lightgbm(raw, names)
    pyfunc_conf = model.metadata.flavors.get("python_function", {})
    fn_name = pyfunc_conf.get("predict_fn", "predict") if flavour == "mlflow.sklearn" else "predict"
    predict_fn = getattr(raw, fn_name, None)
    if not callable(predict_fn):
        return f"the model has no {fn_name}()", None
    wants_frame = getattr(raw, "feature_names_in_", None) is not None
    return "", NativeTabular(predict_fn, names, wants_frame, flavour)


def _xgboost(raw: Any, names: list[str]) -> tuple[str, NativeTabular | None]:
    """The native predict of an ``mlflow.xgboost`` model (see the module's docstring), or why there is none."""
    import functools

    import xgboost

    predict_fn: Callable[[np.ndarray], Any]
    if isinstance(raw, xgboost.XGBModel):
        booster = raw.get_booster()
        predict_fn = functools.partial(raw.predict, validate_features=False)
    elif isinstance(raw, xgboost.Booster):
        booster = raw
        if _booster_kind(booster) != "gbtree":  # dart: in-place answers differ; gblinear: as XGBModel

            def predict_fn(rows: np.ndarray) -> Any:
                return booster.predict(xgboost.DMatrix(rows), validate_features=False)

        else:

            def predict_fn(rows: np.ndarray) -> Any:
                with np.errstate(over="ignore"):
                    overflows = np.isinf(rows.astype(np.float32)).any()
                if overflows:  # a DMatrix refuses values beyond float32 (pyfunc's error); in-place prediction not
                    return booster.predict(xgboost.DMatrix(rows), validate_features=False)
                return booster.inplace_predict(rows, validate_features=False)

    else:
        return f"the XGBoost model is a {type(raw).__name__}", None
    if booster.feature_types is not None and "c" in booster.feature_types:
        return "the XGBoost model has categorical features", None
    if booster.feature_names is not None and list(booster.feature_names) != names:
        return f"the XGBoost model's feature names {booster.feature_names} are not the signature's {names}", None
    if booster.num_features() != len(names):
        return f"the XGBoost model has {booster.num_features()} features; the signature {len(names)}", None
    # One thread per call: an OpenMP team per request of a few rows costs 10-30x the prediction on a busy machine
    # (the server's workers and run threads are the parallelism). The answers do not depend on it (rows are
    # independent); pyfunc's fallback calls share the booster, so they get it too.
    booster.set_param({"nthread": 1})
    return "", NativeTabular(predict_fn, names, False, "mlflow.xgboost", order="C")


def _lightgbm(raw: Any, names: list[str]) -> tuple[str, NativeTabular | None]:
    """The native predict of an ``mlflow.lightgbm`` model (a ``Booster`` or scikit-learn API model), or why none."""
    import functools

    booster = getattr(raw, "booster_", None)
    if getattr(raw, "pandas_categorical", None) or (
        booster is not None and getattr(booster, "pandas_categorical", None)
    ):
        return "the LightGBM model has pandas categorical features", None
    predict = getattr(raw, "predict", None)
    if not callable(predict):
        return "the model has no predict()", None
    # One thread per call, as for XGBoost: LightGBM predicts a dense matrix in an OpenMP parallel region with the
    # library's default team (every core) unless the call says otherwise, and the team's threads then spin waiting
    # for the next region; for a request of a few rows the team is pure overhead, and on a busy machine each call
    # waits for every team thread to be scheduled (p99 doubled here). The answers do not depend on it (rows are
    # independent). LightGBM keeps no prediction thread count on the model (``num_threads`` is a per-call
    # parameter), so the model's own ``predict`` is replaced by one passing it: pyfunc's fallback calls share the
    # model and get it too; a caller's own ``num_threads`` still wins.
    one_thread = functools.partial(predict, num_threads=1)
    raw.predict = one_thread
    wants_frame = getattr(raw, "feature_names_in_", None) is not None
    return "", NativeTabular(one_thread, names, wants_frame, "mlflow.lightgbm")


def _booster_kind(booster: Any) -> str:
    """``gbtree``, ``dart`` or ``gblinear``: the booster's kind, from its saved configuration."""
    import json

    config = json.loads(booster.save_config())
    return str(config["learner"]["gradient_booster"]["name"])


def _probe(model: Any, native: NativeTabular) -> np.ndarray:
    """Rows to compare both paths on: the saved input example when it fits, else a few synthetic rows."""
    try:
        example = model.input_example
    except Exception:
        example = None
    if example is not None and hasattr(example, "columns") and list(example.columns) == native.names:
        try:
            rows = example.to_numpy(dtype=np.float64)
            if rows.ndim == 2 and len(rows):
                return rows
        except (TypeError, ValueError):
            pass
    grid = np.arange(3 * native.width, dtype=np.float64).reshape(3, native.width)
    return grid / 7.0 - 0.5


def _frame(rows: np.ndarray, names: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=names)


def _json(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(type(obj).__name__)

    return type(value).__name__.encode() + b":" + orjson.dumps(value, default=default, option=_JSON_OPTIONS)
