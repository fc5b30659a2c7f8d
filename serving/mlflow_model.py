"""MLflow models with no scoring script: loaded as pyfunc, scored in Azure ML's and MLflow's request formats.

Used when ``AZUREML_ENTRY_SCRIPT`` is unset and the model folder holds an ``MLmodel`` file (at its root or up to
two folders down, as Azure ML mounts registered models). Accepted bodies (``application/json``):

* Azure ML: ``{"input_data": {"columns": [...], "index": [...], "data": [...]}}`` for tabular models, or
  ``{"input_data": [...]}`` / ``{"input_data": {"name": [...]}}`` for tensor models; optional ``"params"``;
* MLflow: ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` (optional ``params``).

The input is parsed against the model signature (MLflow's own parser, types coerced as the signature says); the
answer is shaped by :mod:`serving.mlflow_answer` (``input_data``: the predictions as Azure's no-code scorer gives
them; MLflow's formats: ``{"predictions": [...]}`` as ``mlflow models serve`` gives them). Where it is safe,
``serving.mlflow_native`` predicts with the native flavour on arrays built straight from the body (same answers as
pyfunc, no DataFrame per request), and such requests are batched when ``ENDPOINTS_MAX_BATCH_SIZE`` is above 1
(``serving.batching``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from contract.serving import ScoringSettings
from serving import mlflow_answer
from serving.entry_script import add_app_paths
from serving.errors import (
    BadInput,
    MethodNotAllowed,
    NotReady,
    RunError,
    ScriptError,
    UnsupportedInput,
    describe_exception,
)
from serving.request_json import ScoreRequest, ScoreResult
from serving.run_pool import RunPool
from serving.scoring import Scorer

logger = logging.getLogger("serving.mlflow")

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _error_code(ex: Exception) -> str:
    return str(getattr(ex, "error_code", ""))


class MlflowScorer(Scorer):
    """Scores with an MLflow pyfunc model; ``predict`` runs in a bounded thread pool."""

    def __init__(self, settings: ScoringSettings, model_path: str) -> None:
        """Prepare (nothing is imported until :meth:`load`).

        Args:
            settings: scoring settings; ``run_threads`` bounds the thread pool.
            model_path: the folder holding ``MLmodel``.
        """
        self.settings = settings
        self.model_path = model_path
        self.model: Any = None
        self.input_schema: Any = None
        self._pool: RunPool | None = None
        self._swagger: Any = None
        self._native: Any = None  # serving.mlflow_native.NativeTabular when the fast path is safe
        self._batcher: Any = None
        if settings.batching.enabled:
            from serving.batching import BatchMetrics

            self.batch_metrics = BatchMetrics(settings.batching)

    def load(self) -> None:
        """Load the model with ``mlflow.pyfunc.load_model``; any failure raises ScriptError (exit 3)."""
        add_app_paths(self.settings)
        try:
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(self.model_path)
        except Exception as ex:
            raise ScriptError(f"MLflow model {self.model_path}: loading failed: {describe_exception(ex)}") from ex
        self.input_schema = model.metadata.get_input_schema()
        from serving.swagger import schema_swagger

        self._swagger = schema_swagger(self.settings, *signature_schemas(model.metadata))
        self._pool = RunPool(self.settings.run_threads, "predict", on_exhausted=self.on_run_threads_exhausted)
        from serving.mlflow_native import NativeTabular

        self._native = native = NativeTabular.from_pyfunc(model)
        if native is not None and self.settings.batching.enabled:
            self._batcher = _native_batcher(native, self._pool, self.settings, self.batch_metrics)
        elif self.settings.batching.enabled:
            logger.warning("ENDPOINTS_MAX_BATCH_SIZE is set but this model has no native fast path: batching off")
        self.model = model
        logger.info("MLflow model %s loaded (flavor loader %s)", self.model_path, model.loader_module)

    def parse(self, body: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        """Turn a request body into the model input and params (raises BadInput naming the problem)."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import infer_and_parse_data

        params = body.get("params")
        if params is not None and not isinstance(params, dict):
            raise BadInput(f"'params' must be a JSON object; got {type(params).__name__}")
        if "input_data" in body:
            value = body["input_data"]
            tensor_based = self.input_schema is not None and self.input_schema.is_tensor_spec()
            if isinstance(value, dict) and ("data" in value or "columns" in value) and not tensor_based:
                data = {"dataframe_split": value}
            else:
                data = {"inputs": value}
        else:
            keys = [key for key in body if key in MLFLOW_FORMATS]
            if len(keys) != 1:
                raise BadInput(
                    "the body must hold exactly one of input_data, dataframe_split, dataframe_records, instances, "
                    f"inputs; got keys {sorted(body)}"
                )
            data = {keys[0]: body[keys[0]]}
        try:
            return infer_and_parse_data(data, self.input_schema), params
        except MlflowException as ex:
            raise BadInput(f"the input does not match the model signature: {ex.message}") from None
        except (ValueError, TypeError, KeyError) as ex:
            raise BadInput(f"the input cannot be parsed: {ex}") from None

    def predict(self, model_input: Any, params: dict[str, Any] | None) -> Any:
        """Call the model (signature enforcement errors become BadInput, other failures RunError)."""
        from mlflow.exceptions import MlflowException

        try:
            if params:
                return self.model.predict(model_input, params=params)
            return self.model.predict(model_input)
        except MlflowException as ex:
            if _error_code(ex) in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"):
                raise BadInput(f"the input does not match the model signature: {ex.message}") from None
            raise RunError("An unexpected error occurred in the model. Check the logs for more info.") from ex
        except Exception as ex:
            raise RunError("An unexpected error occurred in the model. Check the logs for more info.") from ex

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """Parse the JSON body against the signature, predict, answer as :mod:`serving.mlflow_answer` says."""
        if self.model is None or self._pool is None:
            raise NotReady("the model is still loading")
        if request.method != "POST":
            raise MethodNotAllowed(f"Method {request.method} is not allowed on /score for MLflow models; use POST")
        if not request.is_json():
            raise UnsupportedInput("Expects Content-Type to be application/json")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError as ex:
            raise BadInput(f"POST body could not be decoded as JSON: {ex}") from None
        if not isinstance(body, dict):
            raise BadInput("POST body should be a JSON dictionary.")
        rows = self._native.parse(body) if self._native is not None else None
        if rows is not None:
            start = time.perf_counter()
            try:
                if self._batcher is not None:
                    predictions = await self._batcher.submit(rows)
                else:
                    predictions = await self._pool.run(self._native.predict, {"rows": rows})
            except Exception as ex:
                raise RunError("An unexpected error occurred in the model. Check the logs for more info.") from ex
            output = mlflow_answer.answer(mlflow_answer.request_format(body), predictions)
            return ScoreResult(output=output, elapsed_ms=(time.perf_counter() - start) * 1000)
        model_input, params = self.parse(body)
        start = time.perf_counter()
        predictions = await self._pool.run(self.predict, {"model_input": model_input, "params": params})
        output = mlflow_answer.answer(mlflow_answer.request_format(body), predictions)
        return ScoreResult(output=output, elapsed_ms=(time.perf_counter() - start) * 1000)

    def swagger(self, version: str) -> dict[str, Any]:
        """Swagger from the model signature (user override files in the app root win)."""
        if self._swagger is None:
            raise NotReady("the model is still loading")
        result: dict[str, Any] = self._swagger.get(version)
        return result

    def close(self) -> None:
        """Shut the thread pool down without waiting."""
        if self._pool is not None:
            self._pool.close()


def _native_batcher(native: Any, pool: RunPool, settings: ScoringSettings, metrics: Any) -> Any:
    """A ``serving.batching.Batcher`` predicting several requests' rows in one native call."""
    import functools

    from serving.batching import Batcher, run_items

    on_fallback = metrics.fallbacks.inc if metrics is not None else None
    call = functools.partial(run_items, native.predict_batch, native.predict, on_fallback=on_fallback)

    def execute(items: list[Any], request_ids: list[Any]) -> Any:
        return pool.call(call, {"items": items, "request_ids": request_ids})

    logger.info(
        "batching on: up to %d requests per predict() call, waiting up to %d ms under load",
        settings.batching.max_batch_size,
        settings.batching.max_batch_wait_ms,
    )
    return Batcher(execute, settings.batching, metrics, abandon=pool.abandon)


_MLFLOW_TO_JSON_TYPE = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "binary": {"type": "string", "format": "binary"},
    "datetime": {"type": "string", "format": "date-time"},
}


_NUMPY_KIND_TO_JSON_TYPE = {
    "i": {"type": "integer"},
    "u": {"type": "integer"},
    "f": {"type": "number"},
    "b": {"type": "boolean"},
}


def _json_type(spec: Any) -> dict[str, Any]:
    """JSON schema of one column (ColSpec: MLflow DataType) or tensor (TensorSpec: numpy dtype)."""
    if hasattr(spec, "shape"):  # TensorSpec
        dtype = spec.type
        schema = dict(_NUMPY_KIND_TO_JSON_TYPE.get(getattr(dtype, "kind", ""), {"type": "string"}))
        if schema["type"] in ("integer", "number"):
            schema["format"] = str(dtype.name)
        return schema
    type_name = getattr(getattr(spec, "type", None), "name", None)
    return dict(_MLFLOW_TO_JSON_TYPE.get(str(type_name), {"type": "object"}))


def signature_schemas(metadata: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON schemas (``ServiceInput``, ``ServiceOutput``) of the Azure ML request and response for a signature.

    A model without a signature gets open objects.
    """
    input_schema = metadata.get_input_schema()
    output_schema = metadata.get_output_schema()
    if input_schema is None:
        service_input: dict[str, Any] = {
            "type": "object",
            "properties": {"input_data": {"type": "object"}, "params": {"type": "object"}},
        }
    elif input_schema.is_tensor_spec():
        service_input = {
            "type": "object",
            "properties": {"input_data": {"type": "array", "items": _json_type(input_schema.inputs[0])}},
        }
    else:
        names = input_schema.input_names()
        items = [_json_type(spec) for spec in input_schema.inputs]
        service_input = {
            "type": "object",
            "properties": {
                "input_data": {
                    "type": "object",
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}, "example": names},
                        "index": {"type": "array", "items": {"type": "integer"}},
                        "data": {"type": "array", "items": {"type": "array", "items": {"anyOf": items}}},
                    },
                    "required": ["columns", "data"],
                }
            },
            "required": ["input_data"],
        }
    if output_schema is None or not output_schema.inputs:
        prediction: dict[str, Any] = {}
    else:
        prediction = _json_type(output_schema.inputs[0])
    # The answer to an ``input_data`` request (the format the swagger documents): the predictions themselves.
    service_output = {"type": "array", "items": prediction}
    return service_input, service_output
