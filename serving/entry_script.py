"""The Azure ML entry script: importing it, reading its ``run()`` signature, ``init()``, and ``run()``'s arguments.

Compatible with azureml-inference-server-http 1.5 (``azmlinfsrv``): the same input modes (undecorated
``run(raw)`` receiving text, ``request_headers``, inference-schema decorators, ``@rawhttp``), the same 400/415
messages, and ``async def run`` awaited on the event loop (``serving.scoring.ScriptScorer`` calls it).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import Any

from contract.serving import ScoringSettings
from serving.errors import BadInput, MethodNotAllowed, ScriptError, describe_exception
from serving.request_json import TOO_DEEP, ScoreRequest

_module_names = itertools.count()


def unwrap(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` without its decorators (``__wrapped__`` followed, at most 32 deep)."""
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
        self.is_async = inspect.iscoroutinefunction(unwrap(self.run_function))

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


def add_app_paths(settings: ScoringSettings) -> None:
    """Append ``AML_APP_ROOT`` and ``AZUREML_SOURCE_DIRECTORY`` to ``sys.path`` as azmlinfsrv does."""
    paths = [settings.app_root]
    if settings.source_dir:
        paths.append(os.path.join(settings.app_root, settings.source_dir))
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
