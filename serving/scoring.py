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

from serving.requestid import current_request_id

logger = logging.getLogger("serving.scoring")

DEFAULT_APP_ROOT = "/var/azureml-app"
SERVER_NAME = "k8s-ml-endpoints"


def _server_version() -> str:
    from endpoints import __version__

    return f"{SERVER_NAME}/{__version__}"


# --------------------------------------------------------------------------------------------------------------------
# Errors: one place maps each exception type to its HTTP status.
# --------------------------------------------------------------------------------------------------------------------


class ScoringError(Exception):
    """Base of every error the scoring app answers; ``str(error)`` is the body's ``error`` text."""


class BadInput(ScoringError):
    """The request body or query cannot be turned into ``run()`` arguments (400)."""


class UnsupportedInput(ScoringError):
    """The request's content type is not one the scoring function accepts (415)."""


class MethodNotAllowed(ScoringError):
    """The route does not accept the request's method (405)."""


class NotFound(ScoringError):
    """No route or resource (swagger version) by that name (404)."""


class HeaderTooLong(ScoringError):
    """A request-id header is longer than Azure's limit of 100 characters (431)."""


class NotReady(ScoringError):
    """``init()`` has not finished in this worker yet (503)."""


class RunError(ScoringError):
    """The user's ``run()`` raised, or returned a value that cannot be serialised (424, Azure's model error)."""


class ScriptError(ScoringError):
    """The entry script cannot be loaded, has no ``init``/``run``, or ``init()`` raised: the process exits 3."""


ERROR_STATUS: dict[type[ScoringError], int] = {
    BadInput: 400,
    NotFound: 404,
    MethodNotAllowed: 405,
    UnsupportedInput: 415,
    RunError: 424,
    HeaderTooLong: 431,
    ScriptError: 500,
    NotReady: 503,
}


def status_for(error: ScoringError) -> int:
    """Return the HTTP status of ``error``: the entry of its nearest class in :data:`ERROR_STATUS` (default 500)."""
    for cls in type(error).__mro__:
        status = ERROR_STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500


# --------------------------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScoringSettings:
    """Where the scoring code and model are, read from Azure ML's environment variables.

    Attributes:
        app_root: ``AML_APP_ROOT``; added to ``sys.path`` (default: the current directory).
        entry_script: ``AZUREML_ENTRY_SCRIPT``, relative to ``app_root`` or absolute (default none: MLflow model).
        model_dir: ``AZUREML_MODEL_DIR`` (default empty).
        source_dir: ``AZUREML_SOURCE_DIRECTORY``, relative to ``app_root``, also added to ``sys.path``.
        service_name: ``SERVICE_NAME``, the swagger title (default ``ML service``).
        service_version: ``SERVICE_VERSION``, the swagger version (default ``1.0``).
        service_path_prefix: ``SERVICE_PATH_PREFIX``, prefixed to the swagger paths (default empty).
        cors_origins: ``AML_CORS_ORIGINS``, comma-separated origins allowed by CORS (default none).
        worker_count: ``WORKER_COUNT``, worker processes (default 1).
        server_version: value of the ``x-ms-server-version`` header; ``HTTP_X_MS_SERVER_VERSION`` overrides it and
            ``SERVER_VERSION_LOG_RESPONSE_ENABLED=false`` turns it off (default ``k8s-ml-endpoints/<version>``).
        run_threads: ``ENDPOINTS_RUN_THREADS``, threads running synchronous ``run()`` per worker (default
            ``ENDPOINTS_MAX_CONCURRENT_REQUESTS``, itself 1 by default).
    """

    app_root: str
    entry_script: str | None = None
    model_dir: str = ""
    source_dir: str | None = None
    service_name: str = "ML service"
    service_version: str = "1.0"
    service_path_prefix: str = ""
    cors_origins: str | None = None
    worker_count: int = 1
    server_version: str = ""
    run_threads: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScoringSettings:
        """Read the settings from ``environ`` (default ``os.environ``); bad integers raise ``ValueError``."""
        env = os.environ if environ is None else environ
        if env.get("SERVER_VERSION_LOG_RESPONSE_ENABLED", "true").lower() == "true":
            server_version = env.get("HTTP_X_MS_SERVER_VERSION") or _server_version()
        else:
            server_version = ""
        return cls(
            app_root=env.get("AML_APP_ROOT") or os.getcwd(),
            entry_script=env.get("AZUREML_ENTRY_SCRIPT") or None,
            model_dir=env.get("AZUREML_MODEL_DIR", ""),
            source_dir=env.get("AZUREML_SOURCE_DIRECTORY") or None,
            service_name=env.get("SERVICE_NAME", "ML service"),
            service_version=env.get("SERVICE_VERSION", "1.0"),
            service_path_prefix=env.get("SERVICE_PATH_PREFIX", ""),
            cors_origins=env.get("AML_CORS_ORIGINS") or None,
            worker_count=_int_env(env, "WORKER_COUNT", 1),
            server_version=server_version,
            run_threads=_int_env(env, "ENDPOINTS_RUN_THREADS", _int_env(env, "ENDPOINTS_MAX_CONCURRENT_REQUESTS", 1)),
        )

    @property
    def entry_script_path(self) -> str | None:
        """Absolute path of the entry script, or None when there is none (MLflow model)."""
        if not self.entry_script:
            return None
        return os.path.join(self.app_root, self.entry_script)


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}: got {raw!r}; expected a positive integer") from None
    if value < 1:
        raise ValueError(f"environment variable {name}: got {raw!r}; expected a positive integer")
    return value


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
        if not isinstance(value, dict):
            raise BadInput("POST body should be a JSON dictionary.")
        return value


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


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
        raise ScriptError(f"entry script {path}: import failed: {ex!r}") from ex
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
            raise ScriptError(f"entry script {self.path}: init() failed: {ex!r}") from ex

    def arguments(self, request: ScoreRequest) -> dict[str, Any]:
        """Turn ``request`` into ``run()``'s keyword arguments (raises BadInput/UnsupportedInput)."""
        if self.mode == "rawhttp":
            kwargs: dict[str, Any] = {self.first_param: build_aml_request(request)}
        elif request.method == "GET":
            query = request.query_json()
            kwargs = {self.first_param: json.dumps(query)} if self.mode == "raw" else self._extract(query)
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
    """

    def __init__(self, size: int, name: str = "run", batch_s: float = 0.005) -> None:
        """Start ``size`` threads named ``{name}_{i}``; ``batch_s`` bounds how long a result is held (default 5 ms)."""
        import queue
        import threading

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch_s = batch_s
        self._single = size <= 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitting: list[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], Any, bytes | None]
        ] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(max(1, size))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        import queue

        get, get_nowait, empty = self._queue.get, self._queue.get_nowait, queue.Empty
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
            for loop, future, func, kwargs, request_id in calls:
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
        """Run ``func(**kwargs)`` in a pool thread; await the returned future for its result."""
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

    def _submit(self) -> None:
        calls, self._submitting = self._submitting, []
        if calls:
            self._queue.put(calls)

    def close(self) -> None:
        """Let the threads end after the calls already queued."""
        for _ in self._threads:
            self._queue.put(None)


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
    """

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
        self._pool = RunPool(self.settings.run_threads, "run")
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
            else:
                output = await self._pool.call(run, kwargs)
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


def add_app_paths(settings: ScoringSettings) -> None:
    """Append ``AML_APP_ROOT`` and ``AZUREML_SOURCE_DIRECTORY`` to ``sys.path`` as azmlinfsrv does."""
    paths = [settings.app_root]
    if settings.source_dir:
        paths.append(os.path.join(settings.app_root, settings.source_dir))
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)


def make_scorer(settings: ScoringSettings) -> Scorer:
    """Pick the scorer: the entry script when one is set, else an MLflow model found in the model folder.

    Raises:
        ScriptError: neither an entry script nor an ``MLmodel`` file under ``AZUREML_MODEL_DIR``.
    """
    if settings.entry_script:
        return ScriptScorer(settings)
    from serving.mlflow_model import MlflowScorer, find_mlflow_model

    model_path = find_mlflow_model(settings.model_dir)
    if model_path is None:
        raise ScriptError(
            f"AZUREML_ENTRY_SCRIPT is not set and AZUREML_MODEL_DIR={settings.model_dir!r} holds no MLmodel file; "
            "set an entry script or point the model directory at an MLflow model"
        )
    return MlflowScorer(settings, model_path)
