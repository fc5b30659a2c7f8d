"""The scoring ASGI app: ``GET|HEAD /``, ``GET|POST|OPTIONS /score``, ``GET /swagger.json`` (and ``GET /ready``).

A plain ASGI callable rather than a framework router: ``/score`` is the hot path and every layer costs requests
per second (the bench compares it with a bare ASGI app). Behaviour follows azureml-inference-server-http 1.5:

* ``x-request-id`` echoed, or a generated UUID; over 100 characters -> 431. ``x-ms-client-request-id`` echoed;
  ``x-ms-request-id`` echoed or derived as azmlinfsrv does; ``TraceId`` echoed; ``x-ms-server-version`` set.
* ``/score`` answers ``x-ms-run-function-failed`` and ``x-ms-run-fn-exec-ms``; ``run()`` raising -> 424 with
  ``ms-azureml-model-error-statuscode: 500`` and ``ms-azureml-model-error-reason: model_error`` (what Azure's front
  end answers for a model error), the traceback logged with the request id.
* Errors are ``{"error": "<message>"}``; statuses come from ``serving.errors.ERROR_STATUS``.

``/ready`` here is a fallback for running the app bare; the production layer (``serving.frontend``) answers it
first when it wraps this app.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from contract.serving import ScoringSettings
from serving.errors import HeaderTooLong, MethodNotAllowed, NotFound, RunError, ScoringError, status_for
from serving.request_json import PLAIN_RESULT_TYPES, ScoreRequest, to_json
from serving.requestid import current_request_id, new_request_id
from serving.scoring import Scorer

logger = logging.getLogger("serving.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER_LIMIT = 100  # azmlinfsrv's limit on request-id headers
JSON = b"application/json"
_CONTENT_TYPE_JSON = (b"content-type", JSON)
_HEALTHY = b"Healthy"


def _always_ready() -> bool:
    return True


class RequestIds:
    """The request-id headers of one request, resolved as azmlinfsrv does."""

    __slots__ = ("client", "legacy", "request_id", "trace_id")

    def __init__(self, headers: list[tuple[bytes, bytes]] | Any) -> None:
        """Read ``x-request-id``, ``x-ms-request-id``, ``x-ms-client-request-id`` and ``TraceId`` from ``headers``.

        Raises:
            HeaderTooLong: one of them is over 100 characters (the echo headers are kept for the error answer).
        """
        request_id = legacy = client = b""
        trace_id: bytes | None = None
        for key, value in headers:
            if key == b"x-request-id":
                request_id = value
            elif key == b"x-ms-request-id":
                legacy = value
            elif key == b"x-ms-client-request-id":
                client = value
            elif key == b"traceid":
                trace_id = value
        self.trace_id = trace_id
        self.request_id = b""
        self.legacy = b""
        self.client = b""
        if not request_id:
            request_id = new_request_id().encode()
        if len(request_id) > HEADER_LIMIT:
            raise HeaderTooLong(f"x-request-id must not exceed {HEADER_LIMIT} characters")
        self.request_id = request_id
        if legacy:
            # x-ms-request-id used to carry the client's id: keep it as the client id when none is given.
            client = client or legacy
        else:
            legacy = client or request_id
        if len(legacy) > HEADER_LIMIT or len(client) > HEADER_LIMIT:
            raise HeaderTooLong(f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters")
        self.legacy = legacy
        self.client = client

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers echoing these ids."""
        out = []
        if self.request_id:
            out.append((b"x-request-id", self.request_id))
        if self.legacy:
            out.append((b"x-ms-request-id", self.legacy))
        if self.client:
            out.append((b"x-ms-client-request-id", self.client))
        if self.trace_id is not None:
            out.append((b"traceid", self.trace_id))
        return out


class ScoringApp:
    """ASGI app serving one scorer.

    Args:
        scorer: the loaded (or loading) scorer; requests before its ``load()`` finished answer 503.
        settings: scoring settings (the server version header comes from them).
        is_ready: readiness for the fallback ``/ready`` route (default: always ready).
    """

    def __init__(self, scorer: Scorer, settings: ScoringSettings, is_ready: Callable[[], bool] | None = None) -> None:
        """See the class docstring."""
        self.scorer = scorer
        self.settings = settings
        self.is_ready = is_ready or _always_ready
        self._server_headers: list[tuple[bytes, bytes]] = (
            [(b"x-ms-server-version", settings.server_version.encode())] if settings.server_version else []
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers = scope["headers"]
        try:
            ids = RequestIds(headers)
        except HeaderTooLong as ex:
            await self._error(send, ex, None, list(self._server_headers))
            return
        extra = ids.response_headers()
        extra.extend(self._server_headers)
        if path == "/score":
            await self._score(scope, receive, send, method, headers, ids, extra)
        elif path == "/":
            if method in ("GET", "HEAD"):
                await _respond(send, 200, [(b"content-type", b"text/plain; charset=utf-8"), *extra], _HEALTHY)
            else:
                await self._error(send, MethodNotAllowed(f"Method {method} is not allowed on /"), ids, extra)
        elif path == "/swagger.json":
            if method not in ("GET", "HEAD"):
                await self._error(
                    send, MethodNotAllowed(f"Method {method} is not allowed on /swagger.json"), ids, extra
                )
                return
            version = _query_value(scope.get("query_string", b""), "version") or "2"
            try:
                body = self.scorer.swagger_json(version)
            except ScoringError as ex:
                await self._error(send, ex, ids, extra)
                return
            await _respond(send, 200, [_CONTENT_TYPE_JSON, *extra], body)
        elif path == "/ready" and method in ("GET", "HEAD"):
            ready = self.is_ready()
            await _respond(
                send,
                200 if ready else 503,
                [(b"content-type", b"text/plain; charset=utf-8"), *extra],
                b"Ready" if ready else b"Not ready",
            )
        else:
            await self._error(send, NotFound(f"Not found: {path}"), ids, extra)

    async def _score(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        headers: Any,
        ids: RequestIds,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        if method == "OPTIONS":
            await _respond(send, 200, [(b"content-type", b"text/html; charset=utf-8"), *extra], b"")
            return
        if method not in ("GET", "POST"):
            await self._error(send, MethodNotAllowed(f"Method {method} is not allowed on /score"), ids, extra)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away before the whole body arrived: nobody to answer, nothing to score
            return
        current_request_id.set(ids.request_id)  # this request's task only: for what run() prints
        request = ScoreRequest(method, scope.get("query_string", b""), headers, body, scope)
        try:
            result = await self.scorer.score(request)
            output = result.output
            response_cls = None if type(output) in PLAIN_RESULT_TYPES else _response_class()
            if response_cls is not None and isinstance(output, response_cls):
                await self._passthrough(send, output, result.elapsed_ms, extra)
                return
            payload = to_json(output)
        except ScoringError as ex:
            await self._error(send, ex, ids, extra)
            return
        await _respond(
            send,
            200,
            [
                _CONTENT_TYPE_JSON,
                (b"x-ms-run-function-failed", b"False"),
                (b"x-ms-run-fn-exec-ms", f"{result.elapsed_ms:.3f}".encode()),
                *extra,
            ],
            payload,
        )

    async def _passthrough(
        self, send: Send, response: Any, elapsed_ms: float, extra: list[tuple[bytes, bytes]]
    ) -> None:
        """Send a werkzeug/flask response (``AMLResponse``) returned by ``run()`` as it is."""
        status = int(response.status_code)
        if status >= 500:
            response.headers["x-ms-run-function-failed"] = "True"
        body = response.get_data()
        headers = [
            (name.lower().encode("latin-1"), str(value).encode("latin-1"))
            for name, value in response.headers.items()
            if name.lower() != "content-length"
        ]
        names = {name for name, _ in headers}
        headers.append((b"x-ms-run-fn-exec-ms", f"{elapsed_ms:.3f}".encode()))
        headers.extend((name, value) for name, value in extra if name not in names)
        await _respond(send, status, headers, body)

    async def _error(
        self, send: Send, error: ScoringError, ids: RequestIds | None, extra: list[tuple[bytes, bytes]]
    ) -> None:
        status = status_for(error)
        headers = [_CONTENT_TYPE_JSON, *extra]
        if isinstance(error, RunError):
            request_id = ids.request_id.decode("latin-1") if ids else "-"
            cause = error.__cause__ or error
            logger.error(
                "run() failed (request id %s): %s",
                request_id,
                error,
                exc_info=(type(cause), cause, cause.__traceback__),
            )
            headers += [
                (b"x-ms-run-function-failed", b"True"),
                (b"ms-azureml-model-error-statuscode", b"500"),
                (b"ms-azureml-model-error-reason", b"model_error"),
            ]
        await _respond(send, status, headers, to_json({"error": str(error)}))


def _response_class() -> type | None:
    module = sys.modules.get("werkzeug.wrappers.response")
    return getattr(module, "Response", None) if module is not None else None


def _query_value(query_string: bytes, name: str) -> str | None:
    from urllib.parse import parse_qsl

    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == name:
            return value
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when a disconnect came first (run() must never see a partial body)."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_app(scorer: Scorer, settings: ScoringSettings, is_ready: Callable[[], bool] | None = None) -> ASGIApp:
    """The scoring app, with CORS (``AML_CORS_ORIGINS``: GET and POST from those origins) when configured."""
    app: ASGIApp = ScoringApp(scorer, settings, is_ready)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
        app = CORSMiddleware(app, allow_origins=origins, allow_methods=["GET", "POST"])
    return app
