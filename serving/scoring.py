"""Azure ML scoring contract: settings from Azure's environment variables, the entry script's ``init()``/``run()``.

Compatible with azureml-inference-server-http 1.5 (``azmlinfsrv``): the same input modes (undecorated
``run(raw)`` receiving text, ``request_headers``, inference-schema decorators, ``@rawhttp``), the same 400/415
messages, and ``async def run`` awaited on the event loop. Errors map to HTTP statuses in one table,
:data:`ERROR_STATUS`; bodies are ``{"error": "<message>"}`` with no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

import orjson

from contract.serving import SERVER_NAME, ScoringSettings  # noqa: F401  (re-exported)
from serving.batching import BatchSettings  # noqa: F401  (re-exported)
from serving.errors import (  # noqa: F401  (re-exported: the scoring contract's errors)
    ERROR_STATUS,
    BadInput,
    HeaderTooLong,
    MethodNotAllowed,
    NotFound,
    NotReady,
    RunError,
    ScoringError,
    ScriptError,
    UnsupportedInput,
    describe_exception,
    status_for,
)
from serving.requestid import current_request_id

logger = logging.getLogger("serving.scoring")

DEFAULT_APP_ROOT = "/var/azureml-app"


# --------------------------------------------------------------------------------------------------------------------
# Errors: one place maps each exception type to its HTTP status.
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Requests and results
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ScoreRequest:
    """One ``/score`` request, as the ASGI app received it.

    Attributes:
        method: HTTP method, upper case.
        query_string: raw query string.
        headers: raw ASGI headers (lower-case names).
        body: the whole body.
        scope: the ASGI scope (for building a WSGI-style request for ``@rawhttp``).
    """

    method: str
    query_string: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes
    scope: Mapping[str, Any]

    def header(self, name: bytes) -> bytes | None:
        """Return the first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def headers_dict(self) -> dict[str, str]:
        """Headers as azmlinfsrv hands them to ``run(request_headers=...)``: ``X-Request-Id``-style names."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            name = key.decode("latin-1").title()
            text = value.decode("latin-1")
            out[name] = f"{out[name]},{text}" if name in out else text
        return out

    def query_json(self) -> dict[str, Any]:
        """Query parameters parsed as azmlinfsrv does: each value as JSON if it parses, repeated keys as lists."""
        grouped: dict[str, list[Any]] = {}
        for key, value in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True):
            grouped.setdefault(key, []).append(_json_or_text(value))
        return {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}

    def is_json(self) -> bool:
        """True when the content type is ``application/json`` or ``application/*+json`` (werkzeug's rule)."""
        raw = self.header(b"content-type")
        if raw is None:
            return False
        mimetype = raw.split(b";", 1)[0].strip().lower()
        return mimetype == b"application/json" or (mimetype.startswith(b"application/") and mimetype.endswith(b"+json"))

    def json_object(self) -> dict[str, Any]:
        """Parse the body as the JSON object inference-schema scripts expect, with azmlinfsrv's messages."""
        if not self.is_json():
            raise UnsupportedInput("Expects Content-Type to be application/json")
        body = self.body
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            if not body:
                raise BadInput("POST body is empty. Expecting a JSON dictionary.") from None
            try:  # the standard library's message is the one azmlinfsrv shows
                value = json.loads(body)
            except ValueError as ex:
                raise BadInput(f"POST body could not be decoded as JSON: {ex}") from None
            except RecursionError:  # orjson stops at 1024 levels; the standard library at the recursion limit
                raise BadInput(TOO_DEEP) from None
        if not isinstance(value, dict):
            raise BadInput("POST body should be a JSON dictionary.")
        return value


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
    except RecursionError:
        raise BadInput(TOO_DEEP) from None


TOO_DEEP = "JSON input is nested too deeply"


@dataclasses.dataclass
class ScoreResult:
    """What ``run()`` gave back.

    Attributes:
        output: the returned value (serialised to JSON by the app) or a response object passed through.
        elapsed_ms: time spent in ``run()``.
    """

    output: Any
    elapsed_ms: float


# --------------------------------------------------------------------------------------------------------------------
# Output serialisation
# --------------------------------------------------------------------------------------------------------------------

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    """Serialise what orjson does not: pandas objects, non-contiguous or object numpy arrays, sets, Decimals."""
    module = type(obj).__module__
    if module.startswith("pandas"):
        if hasattr(obj, "to_dict") and hasattr(obj, "columns"):
            return obj.to_dict(orient="records")
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "isoformat"):
            return obj.isoformat()
    if module == "numpy" and hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if type(obj).__name__ == "Decimal":
        return float(obj)
    if isinstance(obj, bytes | bytearray):
        return obj.decode("utf-8")
    raise TypeError(f"run() returned a value of type {type(obj).__name__}, which cannot be serialised as JSON")


def to_json(output: Any) -> bytes:
    """Serialise a ``run()`` result: None -> ``{}``; numpy and pandas values as lists and numbers.

    Raises:
        RunError: the value cannot be serialised.
    """
    if output is None:
        return b"{}"
    try:
        return orjson.dumps(output, default=_default, option=_ORJSON_OPTIONS)
    except TypeError as ex:
        raise RunError(f"run() returned a value that cannot be serialised as JSON ({ex})") from ex


# --------------------------------------------------------------------------------------------------------------------
# The entry script
# --------------------------------------------------------------------------------------------------------------------

_module_names = itertools.count()


def _unwrap(func: Callable[..., Any]) -> Callable[..., Any]:
    seen = 0
    while hasattr(func, "__wrapped__") and seen < 32:
        func = func.__wrapped__
        seen += 1
    return func


def _is_rawhttp(func: Callable[..., Any]) -> bool:
    current: Any = func
    for _ in range(32):
        if getattr(current, "__aml_rawhttp__", False):
            return True
        if not hasattr(current, "__wrapped__"):
            return False
        current = current.__wrapped__
    return False


def load_module(path: str) -> ModuleType:
    """Import the entry script at ``path`` as azmlinfsrv does (module name ``entry_module``).

    A second script loaded in the same process (tests) gets a unique name so that inference-schema's registry,
    keyed by module and function name, keeps the two apart.

    Raises:
        ScriptError: the file is missing or raised while importing.
    """
    import importlib.util

    name = "entry_module" if "entry_module" not in sys.modules else f"entry_module_{next(_module_names)}"
    if not os.path.isfile(path):
        raise ScriptError(f"entry script {path}: no such file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"entry script {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as ex:
        sys.modules.pop(name, None)
        raise ScriptError(f"entry script {path}: import failed: {describe_exception(ex)}") from ex
    return module


class EntryScript:
    """An Azure ML entry script: ``init()`` once, then ``run(...)`` per request.

    The input mode is decided once, from ``run``'s decorators and parameters:

    * ``raw``: undecorated ``run(data)``; POST body as text, GET query string as a JSON object text;
    * ``schema``: ``@input_schema``: body keys map to ``run``'s parameters;
    * ``rawhttp``: ``@rawhttp``: ``run(request)`` gets an ``AMLRequest``.

    A ``request_headers`` parameter receives the headers in every mode.
    """

    def __init__(self, path: str, module: ModuleType) -> None:
        """Inspect ``module`` (already imported from ``path``).

        Raises:
            ScriptError: ``init`` or ``run`` is missing, or ``run``'s parameters cannot be served.
        """
        from inference_schema.schema_util import is_schema_decorated

        self.path = path
        if not callable(getattr(module, "init", None)):
            raise ScriptError(f"entry script {path}: no init() function defined")
        if not callable(getattr(module, "run", None)):
            raise ScriptError(f"entry script {path}: no run() function defined")
        driver = getattr(module, "driver_module", None)
        # Azure SDK driver modules forward run() without the schema arguments; azmlinfsrv calls the real one.
        self.run_function: Callable[..., Any] = (
            driver.run if isinstance(driver, ModuleType) and hasattr(driver, "run") else module.run
        )
        self.init_function: Callable[[], Any] = module.init
        self.run_batch: Any = getattr(module, "run_batch", None)  # optional: see serving.batching
        params = list(inspect.signature(self.run_function).parameters.values())
        if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            raise ScriptError(f"entry script {path}: run() cannot accept positional-only arguments, *args, or **kwargs")
        self.wants_headers = any(p.name == "request_headers" for p in params)
        self.params = [p for p in params if p.name != "request_headers"]
        if not self.params:
            raise ScriptError(f"entry script {path}: run() needs a parameter for the input data")
        self.first_param = self.params[0].name
        raw = _is_rawhttp(self.run_function)
        decorated = is_schema_decorated(self.run_function)
        if raw and decorated:
            raise ScriptError(f"entry script {path}: run() cannot be decorated with both @rawhttp and @input_schema")
        self.mode = "rawhttp" if raw else "schema" if decorated else "raw"
        self.is_async = inspect.iscoroutinefunction(_unwrap(self.run_function))

    def init(self) -> None:
        """Call the script's ``init()``.

        Raises:
            ScriptError: ``init()`` raised (the cause is chained).
        """
        try:
            result = self.init_function()
            if inspect.isawaitable(result):
                asyncio.run(_await(result))
        except BaseException as ex:
            raise ScriptError(f"entry script {self.path}: init() failed: {describe_exception(ex)}") from ex

    def arguments(self, request: ScoreRequest) -> dict[str, Any]:
        """Turn ``request`` into ``run()``'s keyword arguments (raises BadInput/UnsupportedInput)."""
        if self.mode == "rawhttp":
            kwargs: dict[str, Any] = {self.first_param: build_aml_request(request)}
        elif request.method == "GET":
            query = request.query_json()
            try:
                kwargs = {self.first_param: json.dumps(query)} if self.mode == "raw" else self._extract(query)
            except RecursionError:  # parsed just under the limit, too deep to write again
                raise BadInput(TOO_DEEP) from None
        elif request.method == "POST":
            if self.mode == "raw":
                try:
                    kwargs = {self.first_param: request.body.decode("utf-8")}
                except UnicodeDecodeError as ex:
                    raise BadInput(f"Input cannot be decoded as UTF-8: {ex}") from None
            else:
                kwargs = self._extract(request.json_object())
        else:
            raise MethodNotAllowed(f"Method {request.method} is not allowed on /score")
        if self.wants_headers:
            kwargs["request_headers"] = request.headers_dict()
        return kwargs

    def _extract(self, body: Mapping[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for param in self.params:
            value = body.get(param.name, param.default)
            if value is inspect.Parameter.empty:
                raise BadInput(f"A value is not provided for the {param.name!r} parameter.")
            kwargs[param.name] = value
        return kwargs


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def build_aml_request(request: ScoreRequest) -> Any:
    """Build the ``AMLRequest`` (a ``werkzeug.Request``) a ``@rawhttp`` ``run()`` receives."""
    import io

    from azureml.contrib.services.aml_request import AMLRequest

    scope = request.scope
    server = scope.get("server") or ("127.0.0.1", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": scope.get("path", "/score"),
        "QUERY_STRING": request.query_string.decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(request.body)),
    }
    for key, value in request.headers:
        name = key.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
            continue
        if name == "CONTENT_LENGTH":
            continue
        wsgi_name = f"HTTP_{name}"
        environ[wsgi_name] = f"{environ[wsgi_name]},{text}" if wsgi_name in environ else text
    return AMLRequest(environ)


class RunPool:
    """A bounded pool of daemon threads running synchronous ``run()`` calls for one event loop.

    Lighter than ``loop.run_in_executor`` (no ``concurrent.futures.Future`` chained to an asyncio one): a queue
    in, ``call_soon_threadsafe`` out. Daemon threads, so a ``run()`` stuck past the drain timeout does not keep the
    process alive.

    Results of short calls are handed back in batches: while more calls are queued, a thread keeps the results of
    the calls it finished for up to ``batch_s`` and then hands them all to the loop in one callback. Every hand-back
    wakes the event loop, which then competes with the pool thread for the GIL; under load that costs two to four
    context switches per request (on these VMs about as much CPU as a small model's ``predict``). Batching lets the
    loop sleep while the thread works through the queue. Results are held only while calls are short (a moving
    average of their wall time under ``batch_s / 2``) and more calls are queued; a batch goes back once ``batch_s``
    has passed since its first call started, or as soon as the queue is empty. A finished result therefore waits at
    most ``batch_s`` plus one short call; when calls turn slow, results go back one by one as before (only a
    surprise slow call can delay the short results held just before it).

    With one thread, calls made during one pass of the event loop go to the thread together at the end of the pass
    (one wake-up; the thread starts when the loop is done instead of taking the GIL from it mid-pass).

    Timed-out calls (the awaiting task cancelled, as the production layer does at the request deadline; see
    :meth:`run`): a call still queued is skipped, never started. A call already running cannot be stopped (Python
    threads cannot be killed), so its thread is *abandoned*: a replacement thread starts at once and serves the
    queue, and the abandoned thread ends when its ``run()`` returns. At most ``max_stuck`` threads (default:
    ``size``) may be abandoned at once; one more calls ``on_exhausted`` (once) instead of starting a thread, and
    the serving process recycles the worker then, as gunicorn does when a worker passes its timeout.
    """

    def __init__(
        self,
        size: int,
        name: str = "run",
        batch_s: float = 0.005,
        max_stuck: int | None = None,
        on_exhausted: Callable[[], None] | None = None,
    ) -> None:
        """Start ``size`` threads named ``{name}_{i}``.

        Args:
            size: threads running calls (at least 1).
            name: thread name prefix (default ``run``).
            batch_s: longest time a finished result is held for a batched hand-back (default 5 ms).
            max_stuck: abandoned threads allowed at once before ``on_exhausted`` (default ``size``).
            on_exhausted: called once, on the event loop, when one more call times out while running past
                ``max_stuck`` (default: only an error is logged).
        """
        import queue
        import threading

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch_s = batch_s
        self._single = size <= 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitting: list[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], Any, bytes | None]
        ] = []
        self._name = name
        self._lock = threading.Lock()  # guards the slots (which call each thread runs, abandoned flags)
        self._slots: list[_Slot] = []
        self._spawned = itertools.count()
        self.max_stuck = max(1, size) if max_stuck is None else max_stuck
        self.stuck = 0  # abandoned threads still running their call
        self.exhausted = False
        self._on_exhausted = on_exhausted
        for _ in range(max(1, size)):
            self._spawn()

    def _spawn(self) -> None:
        import threading

        slot = _Slot()
        self._slots.append(slot)
        slot.thread = threading.Thread(
            target=self._work, args=(slot,), name=f"{self._name}_{next(self._spawned)}", daemon=True
        )
        slot.thread.start()

    def _work(self, slot: _Slot) -> None:
        import queue

        get, get_nowait, empty = self._queue.get, self._queue.get_nowait, queue.Empty
        lock = self._lock
        set_request_id = current_request_id.set
        clock = time.perf_counter
        batch_s = self._batch_s
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        done_loop: asyncio.AbstractEventLoop | None = None
        held_since = 0.0
        # Moving average of call durations; starts high, so the first calls are handed back one by one.
        short_s = batch_s / 2
        typical = batch_s
        while True:
            if done:
                try:
                    calls = get_nowait()
                except empty:  # nothing queued: hand back now, then sleep until the next call
                    _hand_back(done_loop, done)
                    done = []
                    continue
            else:
                calls = get()
            if calls is None:
                _hand_back(done_loop, done)
                return
            # The batch is taken call by call under the lock: when this thread is abandoned (a call timed out while
            # running), abandon() moves the calls not yet started back to the queue for the replacement thread.
            slot.batch, slot.next = calls, 0
            while True:
                with lock:
                    if slot.next >= len(slot.batch):
                        break
                    loop, future, func, kwargs, request_id = slot.batch[slot.next]
                    slot.next += 1
                    if future.cancelled():  # timed out while queued: never started
                        continue
                    slot.future = future
                if done and loop is not done_loop:
                    _hand_back(done_loop, done)
                    done = []
                set_request_id(request_id)  # what the script prints is logged with the request's id
                started = clock()
                try:
                    outcome: tuple[asyncio.Future[Any], Any, BaseException | None] = (future, func(**kwargs), None)
                except BaseException as ex:  # handed to the awaiting coroutine
                    outcome = (future, None, ex)
                ended = clock()
                with lock:
                    slot.future = None
                    abandoned = slot.abandoned
                if abandoned:  # a replacement took this thread's place: hand back what is held, then end
                    _hand_back(done_loop, done)
                    with lock:
                        self.stuck -= 1
                    return
                typical += (ended - started - typical) * 0.2
                if not done:
                    held_since = started
                    done_loop = loop
                done.append(outcome)
                # Hold only while calls are short: a result is never kept waiting behind a slow call.
                if typical >= short_s or ended - held_since >= batch_s:
                    _hand_back(done_loop, done)
                    done = []

    def call(self, func: Callable[..., Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """Run ``func(**kwargs)`` in a pool thread; await the returned future for its result.

        Cancelling the future before a thread takes the call means the call never starts; use :meth:`run` so that a
        call cancelled while running frees its thread's place too.
        """
        # asyncio.get_running_loop() costs a getpid system call in Python 3.11: ask the last loop for its current
        # task instead (none when another loop is running now).
        loop = self._loop
        if loop is None or asyncio.current_task(loop) is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        call = (loop, future, func, kwargs, current_request_id.get())
        if self._single:
            # Calls made in one pass of the loop go to the thread together once the pass is over: one wake-up,
            # and the thread starts when the loop has nothing left to do instead of fighting it for the GIL.
            if not self._submitting:
                self._submitting = []
                loop.call_soon(self._submit)
            self._submitting.append(call)
        else:
            self._queue.put([call])
        return future

    async def run(self, func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """``await call(func, kwargs)``; when the awaiting task is cancelled (timeout), free the call's thread."""
        future = self.call(func, kwargs)
        try:
            return await future
        except asyncio.CancelledError:
            self.abandon(future)
            raise

    def abandon(self, future: asyncio.Future[Any]) -> None:
        """The call of ``future`` was given up: if a thread runs it now, replace that thread (see the class doc)."""
        with self._lock:
            slot = next((s for s in self._slots if s.future is future and not s.abandoned), None)
            if slot is None:
                return  # not started (it never will be) or already finished
            slot.abandoned = True
            self._slots.remove(slot)
            rest = slot.batch[slot.next :]
            slot.batch, slot.next = [], 0
            self.stuck += 1
            replace = self.stuck <= self.max_stuck
        if rest:
            self._queue.put(rest)
        if replace:
            logger.warning(
                "a run() call timed out while running; its thread (%s) is left to finish and a new one serves "
                "(%d stuck of %d allowed)",
                slot.thread.name if slot.thread else "?",
                self.stuck,
                self.max_stuck,
            )
            self._spawn()
            return
        if not self.exhausted:
            self.exhausted = True
            logger.error(
                "%d run() calls are stuck past the request timeout (limit %d); recycling the worker",
                self.stuck,
                self.max_stuck,
            )
            if self._on_exhausted is not None:
                self._on_exhausted()

    def _submit(self) -> None:
        calls, self._submitting = self._submitting, []
        if calls:
            self._queue.put(calls)

    def close(self) -> None:
        """Let the threads end after the calls already queued."""
        with self._lock:
            count = len(self._slots)
        for _ in range(count):
            self._queue.put(None)


class _Slot:
    """One pool thread: the batch it works through and the call it runs now (read and written under the lock)."""

    __slots__ = ("abandoned", "batch", "future", "next", "thread")

    def __init__(self) -> None:
        self.thread: Any = None
        self.batch: list[Any] = []
        self.next = 0
        self.future: asyncio.Future[Any] | None = None
        self.abandoned = False


def _hand_back(
    loop: asyncio.AbstractEventLoop | None, done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
) -> None:
    if loop is not None and done:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_settle, done)


def _settle(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in done:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


# run() results that are neither awaitable nor a response object: the per-request checks skip them by type.
PLAIN_RESULT_TYPES = frozenset((list, dict, str, int, float, bool, bytes, tuple, type(None)))


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
    elif inspect.iscoroutinefunction(_unwrap(run_batch)):
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


def add_app_paths(settings: ScoringSettings) -> None:
    """Append ``AML_APP_ROOT`` and ``AZUREML_SOURCE_DIRECTORY`` to ``sys.path`` as azmlinfsrv does."""
    paths = [settings.app_root]
    if settings.source_dir:
        paths.append(os.path.join(settings.app_root, settings.source_dir))
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
