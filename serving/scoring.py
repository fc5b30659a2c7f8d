"""Scorers: the interface the scoring app calls (:class:`Scorer`) and the scorer of an Azure ML entry script.

The other scorer is ``serving.mlflow_model.MlflowScorer`` (an MLflow model, no script); ``serving.scorers`` picks
one. The pieces a scorer is built from have modules of their own: ``serving.entry_script`` (importing the script,
its input modes, ``run()``'s arguments), ``serving.run_pool`` (the threads running a synchronous ``run()``),
``serving.request_json`` (the request and the result as JSON) and ``serving.errors`` (errors -> HTTP statuses).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from contract.serving import ScoringSettings
from serving.entry_script import EntryScript, add_app_paths, load_module, unwrap
from serving.errors import NotReady, RunError, ScriptError
from serving.request_json import PLAIN_RESULT_TYPES, ScoreRequest, ScoreResult, to_json
from serving.run_pool import RunPool

logger = logging.getLogger("serving.scoring")


class Scorer:
    """What the ASGI app calls: load once, then score requests and describe the API.

    Subclasses: :class:`ScriptScorer` (an entry script) and ``serving.mlflow_model.MlflowScorer``.

    Attributes:
        batch_metrics: the batcher's metrics when batching is configured (``serving.batching``), else None; the
            server registers them with the production layer's ``/metrics``.
        on_run_threads_exhausted: handed to the scorer's :class:`RunPool` as ``on_exhausted`` (the serving process
            sets it before :meth:`load` to recycle the worker; default None: only logged).
    """

    batch_metrics: Any = None
    on_run_threads_exhausted: Callable[[], None] | None = None

    def load(self) -> None:
        """Import the code and the model and run ``init()``; raises ScriptError on failure."""
        raise NotImplementedError

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """Score one request; raises ScoringError subclasses for the app to map to a status."""
        raise NotImplementedError

    def swagger(self, version: str) -> dict[str, Any]:
        """The swagger document of ``version``; raises NotFound naming the supported versions."""
        raise NotImplementedError

    def swagger_json(self, version: str) -> bytes:
        """The swagger document of ``version`` as JSON bytes (encoded once at load when the scorer can)."""
        swagger_set = getattr(self, "_swagger", None)
        if swagger_set is not None:
            encoded: bytes = swagger_set.encoded(version)
            return encoded
        return to_json(self.swagger(version))

    def close(self) -> None:
        """Release threads and resources (default: nothing)."""


class ScriptScorer(Scorer):
    """Scores with an Azure ML entry script; synchronous ``run()`` executes in a bounded thread pool."""

    def __init__(self, settings: ScoringSettings) -> None:
        """Prepare (nothing is imported until :meth:`load`).

        Args:
            settings: where the script and model are; ``run_threads`` bounds the thread pool.
        """
        self.settings = settings
        self.script: EntryScript | None = None
        self._pool: RunPool | None = None
        self._swagger: Any = None
        self._batcher: Any = None
        if settings.batching.enabled:
            from serving.batching import BatchMetrics

            self.batch_metrics = BatchMetrics(settings.batching)

    def load(self) -> None:
        """Add the app root and source directory to ``sys.path``, import the script and call ``init()``."""
        path = self.settings.entry_script_path
        if path is None:
            raise ScriptError("no entry script: set AZUREML_ENTRY_SCRIPT or --entry-script")
        add_app_paths(self.settings)
        script = EntryScript(path, load_module(path))
        script.init()
        from serving.swagger import script_swagger

        self._swagger = script_swagger(self.settings, script.run_function)
        self._pool = RunPool(self.settings.run_threads, "run", on_exhausted=self.on_run_threads_exhausted)
        self._batcher = _script_batcher(script, self._pool, self.settings, self.batch_metrics)
        self.script = script
        logger.info("entry script %s loaded; run() input mode: %s", path, script.mode)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """Call ``run()`` with the request's arguments (raises NotReady before :meth:`load` finished)."""
        script = self.script
        if script is None or self._pool is None:
            raise NotReady("the scoring script is still initialising")
        kwargs = script.arguments(request)
        run = script.run_function
        start = time.perf_counter()
        try:
            if script.is_async:
                output = await run(**kwargs)
            elif self._batcher is not None:
                output = await self._batcher.submit(kwargs[script.first_param])
            else:
                # RunPool.run, inline (once per request): a call cancelled while running frees its thread's place.
                future = self._pool.call(run, kwargs)
                try:
                    output = await future
                except asyncio.CancelledError:
                    self._pool.abandon(future)
                    raise
                # A wrapper that hides a coroutine function (the type test skips the ABC check for plain results).
                if type(output) not in PLAIN_RESULT_TYPES and inspect.isawaitable(output):
                    output = await output
        except Exception as ex:
            raise RunError("An unexpected error occurred in scoring script. Check the logs for more info.") from ex
        finally:
            if script.mode == "rawhttp":
                # Uploaded files are spooled to temporary files: close them now, not at garbage collection.
                kwargs[script.first_param].close()
        return ScoreResult(output=output, elapsed_ms=(time.perf_counter() - start) * 1000)

    def swagger(self, version: str) -> dict[str, Any]:
        """Swagger from the decorators or the user's override files (see ``serving.swagger``)."""
        if self._swagger is None:
            raise NotReady("the scoring script is still initialising")
        result: dict[str, Any] = self._swagger.get(version)
        return result

    def close(self) -> None:
        """Stop the run threads once the queued calls are done (without waiting for them)."""
        if self._pool is not None:
            self._pool.close()


def _script_batcher(script: EntryScript, pool: RunPool, settings: ScoringSettings, metrics: Any) -> Any:
    """A ``serving.batching.Batcher`` over the script's ``run_batch(items)``, or None.

    None when batching is off, the script has no ``run_batch``, or ``run()`` cannot take a lone item (several input
    parameters, ``request_headers``, ``@rawhttp``, ``async def run``); the reason is logged.
    """
    batching = settings.batching
    if not batching.enabled:
        return None
    run_batch = script.run_batch
    why = ""
    if not callable(run_batch):
        why = "the entry script defines no run_batch(items)"
    elif script.mode == "rawhttp" or script.is_async or script.wants_headers or len(script.params) != 1:
        why = "run() takes more than one input (or is @rawhttp, async, or wants request_headers)"
    elif inspect.iscoroutinefunction(unwrap(run_batch)):
        why = "run_batch() is async; only a plain function is batched"
    if why:
        logger.warning("ENDPOINTS_MAX_BATCH_SIZE=%d: batching off: %s", batching.max_batch_size, why)
        return None
    import functools

    from serving.batching import Batcher, run_items

    run = script.run_function
    name = script.first_param
    on_fallback = metrics.fallbacks.inc if metrics is not None else None

    def item_fn(item: Any) -> Any:
        return run(**{name: item})

    def execute(items: list[Any], request_ids: list[Any]) -> asyncio.Future[Any]:
        call = functools.partial(run_items, run_batch, item_fn, on_fallback=on_fallback)
        return pool.call(call, {"items": items, "request_ids": request_ids})

    logger.info(
        "batching on: up to %d requests per run_batch() call, waiting up to %d ms under load",
        batching.max_batch_size,
        batching.max_batch_wait_ms,
    )
    return Batcher(execute, batching, metrics, abandon=pool.abandon)
