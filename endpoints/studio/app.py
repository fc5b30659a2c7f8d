"""The studio's web app (Starlette): one page (plain HTML/JS/SVG in ``static/``) and a JSON API over a backend.

Security, in :class:`TokenGate` (every route, pages and static files included):

* A random access token, printed in the URL as Jupyter does. ``?token=...`` on a GET sets an HttpOnly,
  SameSite=Strict cookie and redirects to the same URL without the token (so it leaves the address bar and
  the history); after that the cookie authenticates. Scripts may send ``Authorization: Bearer <token>``.
* Requests that change something are POST. With the cookie they also need the ``X-CSRF-Token`` header (a
  value derived from the access token, handed to the page in a ``<meta>`` tag) and, when the browser sends
  ``Origin``, an origin equal to the studio's own: another site can make the browser send the cookie, but it
  can neither read the page's token nor set that header without a CORS preflight, which the studio refuses.
* Over a cluster stack (:class:`~endpoints.studio.cluster.ClusterBackend`) a change is a preview first; the same
  POST with ``confirm: <the preview's id>`` applies it (see that module). A log's follow ``offset`` is then an opaque
  cursor (per pod, the last line's stamp) rather than a byte offset, and the charts come from the cluster's
  Prometheus; the routes and answers are the same.
* Keys are in no answer but the explicit reveal (POST). Answers carry a strict Content-Security-Policy (no
  inline script), ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``; API answers are not cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from endpoints.prometheus import PrometheusError
from endpoints.studio.backend import LocalBackend, StudioError
from endpoints.studio.metrics import MetricsSampler, NoCharts, PrometheusCharts

if TYPE_CHECKING:
    from endpoints.studio.cluster import ClusterBackend

STATIC = Path(__file__).parent / "static"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD")
JOB_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")
MAX_INVOKE_BYTES = 16 * 1024 * 1024
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        b" frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def csrf_token(access_token: str) -> str:
    """The CSRF value the page sends back in ``X-CSRF-Token`` (derived, so nothing more to store)."""
    return hmac.new(access_token.encode(), b"endpoints-studio-csrf", hashlib.sha256).hexdigest()


def cookie_name(port: int) -> str:
    """Cookie of the studio on ``port`` (cookies ignore ports: two studios on one host must not share one)."""
    return f"endpoints_studio_{port}"


class TokenGate:
    """ASGI middleware: the access token on every request, CSRF checks on POST (see the module docstring).

    Args:
        app: The app behind the gate.
        token: The access token.
        cookie: Name of the cookie that carries it.
    """

    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie
        self.csrf = csrf_token(token)

    def _matches(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in query if k == "token"), None)
        if given is not None and method in SAFE_METHODS and self._matches(given):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response: Response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            await self._send(response, scope, receive, send)
            return
        bearer = headers.get("authorization", "")
        by_header = bearer.lower().startswith("bearer ") and self._matches(bearer[7:].strip())
        jar: SimpleCookie = SimpleCookie()
        with contextlib.suppress(Exception):
            jar.load(headers.get("cookie", ""))
        by_cookie = self.cookie in jar and self._matches(jar[self.cookie].value)
        if not (by_header or by_cookie):
            await self._send(self._unauthorized(scope["path"]), scope, receive, send)
            return
        if method not in SAFE_METHODS and not by_header:
            problem = self._csrf_problem(headers, scope)
            if problem:
                await self._send(JSONResponse({"error": problem}, status_code=403), scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                if scope["path"].startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _csrf_problem(self, headers: dict[str, str], scope: Scope) -> str | None:
        sent = headers.get(CSRF_HEADER)
        if sent is None or not hmac.compare_digest(sent.encode(), self.csrf.encode()):
            return f"missing or wrong {CSRF_HEADER} header; reload the studio page"
        origin = headers.get("origin")
        if origin is not None and origin != f"{scope.get('scheme', 'http')}://{headers.get('host', '')}":
            return f"origin {origin!r} is not this studio's; cross-site requests are refused"
        return None

    @staticmethod
    def _unauthorized(path: str) -> Response:
        message = "open the URL printed by `endpoints studio` (it carries the access token)"
        if path.startswith("/api/"):
            return JSONResponse({"error": f"unauthorized: {message}"}, status_code=401)
        return HTMLResponse(
            f"<!doctype html><title>Studio: unauthorized</title><p>Unauthorized: {message}.</p>", status_code=401
        )

    @staticmethod
    async def _send(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
        response.headers.update({k.decode(): v.decode() for k, v in SECURITY_HEADERS})
        await response(scope, receive, send)


def _error(e: StudioError) -> JSONResponse:
    return JSONResponse({"error": str(e)}, status_code=e.status)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as e:
        raise StudioError(f"request body: not valid JSON ({e})") from e
    if not isinstance(body, dict):
        raise StudioError(f"request body: got {type(body).__name__}; send a JSON object")
    return body


def _weights(body: dict[str, Any], field: str) -> dict[str, int]:
    value = body.get(field, {})
    if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        raise StudioError(f"{field}: got {value!r}; send an object of deployment name -> integer percent")
    return {str(k): v for k, v in value.items()}


def _confirm(body: dict[str, Any], backend: LocalBackend | ClusterBackend) -> str | None:
    """The preview id a cluster change confirms (``confirm``); local changes apply at once."""
    confirm = body.get("confirm")
    if confirm is None:
        return None
    if isinstance(backend, LocalBackend):
        raise StudioError("confirm: the local studio applies changes at once; there is no preview to confirm")
    if not isinstance(confirm, str) or not confirm:
        raise StudioError(f"confirm: got {confirm!r}; send the id of the preview to apply")
    return confirm


def build_app(
    backend: LocalBackend | ClusterBackend,
    token: str,
    port: int,
    sampler: MetricsSampler | PrometheusCharts | NoCharts | None = None,
) -> ASGIApp:
    """The studio app behind its token gate.

    Args:
        backend: Where endpoint state comes from and changes go.
        token: The access token (``secrets.token_urlsafe``).
        port: The port served (names the cookie).
        sampler: The charts' source; default the backend's (``backend.charts()``: local mode scrapes each deployment
            every 5 s, a cluster stack reads its Prometheus).
    """
    charts = sampler or backend.charts()
    index_html = (STATIC / "index.html").read_text().replace("{{CSRF}}", csrf_token(token))

    def api(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except StudioError as e:
                return _error(e)

        return wrapped

    async def index(request: Request) -> Response:
        return HTMLResponse(index_html)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        path = STATIC / name
        if name not in {"studio.js", "studio.css"} or not path.is_file():
            return JSONResponse({"error": f"no static file {name!r}"}, status_code=404)
        return FileResponse(path)

    @api
    async def list_endpoints(request: Request) -> Response:
        items = await _call(backend.list_endpoints)
        for item in items:  # a cluster's rates are a Prometheus query: off the event loop
            online = item["kind"] == "online"
            item["requests_per_second"] = await _call(charts.current_rps, item["name"]) if online else None
        stack = None if isinstance(backend, LocalBackend) else backend.ws.stack_name
        return JSONResponse({"endpoints": items, "backend": backend.kind, "stack": stack})

    @api
    async def endpoint(request: Request) -> Response:
        name = request.path_params["name"]
        item = await _call(backend.endpoint, name)
        item["requests_per_second"] = await _call(charts.current_rps, name)
        return JSONResponse(item)

    @api
    async def set_traffic(request: Request) -> Response:
        body = await _json_body(request)
        unknown = sorted(set(body) - {"traffic", "mirror_traffic", "confirm"})
        if unknown:
            raise StudioError(f"request body: unknown field(s) {', '.join(unknown)}; send traffic and mirror_traffic")
        traffic, mirror = _weights(body, "traffic"), _weights(body, "mirror_traffic")
        name, confirm = request.path_params["name"], _confirm(body, backend)
        if isinstance(backend, LocalBackend):  # applied at once
            return JSONResponse(await _call(backend.set_traffic, name, traffic, mirror))
        # cluster: without confirm a preview (nothing applied), with the preview's id the change applied
        return JSONResponse(await _call(backend.set_traffic, name, traffic, mirror, confirm))

    @api
    async def invoke(request: Request) -> Response:
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_INVOKE_BYTES:
            raise StudioError(f"request body: {length} bytes; the studio sends at most {MAX_INVOKE_BYTES}", 413)
        body = await request.body()
        content_type = request.headers.get("content-type", "application/json")
        deployment = request.query_params.get("deployment") or None
        result = await _call(backend.invoke, request.path_params["name"], body, content_type, deployment)
        return JSONResponse(
            {"status": result.status, "headers": result.headers, "body": result.body, "latency_ms": result.latency_ms}
        )

    @api
    async def swagger(request: Request) -> Response:
        return JSONResponse(await _call(backend.swagger, request.path_params["name"]))

    @api
    async def reveal_keys(request: Request) -> Response:
        return JSONResponse(await _call(backend.keys, request.path_params["name"]))

    @api
    async def regenerate_key(request: Request) -> Response:
        body = await _json_body(request)
        name, key, confirm = request.path_params["name"], str(body.get("key", "")), _confirm(body, backend)
        if isinstance(backend, LocalBackend):
            await _call(backend.regenerate_key, name, key)
            return JSONResponse({"regenerated": key})
        result = await _call(backend.regenerate_key, name, key, confirm)
        return JSONResponse({**result, "regenerated": key} if result["applied"] else result)

    @api
    async def log_names(request: Request) -> Response:
        return JSONResponse({"logs": await _call(backend.log_names, request.path_params["name"])})

    @api
    async def log_tail(request: Request) -> Response:
        try:
            lines = max(1, min(int(request.query_params.get("tail", "200")), 5000))
        except ValueError as e:
            raise StudioError(f"tail: got {request.query_params['tail']!r}; give a number of lines") from e
        text, offset = await _call(backend.log_tail, request.path_params["name"], request.path_params["log"], lines)
        return JSONResponse({"text": text, "offset": offset})

    @api
    async def log_follow(request: Request) -> Response:
        name, log = request.path_params["name"], request.path_params["log"]
        # Local: a byte offset into the log file. Cluster: an opaque cursor (per pod, the last line's stamp).
        offset: Any = request.query_params.get("offset", "0")
        if isinstance(backend, LocalBackend):
            try:
                offset = int(offset)
            except ValueError as e:
                raise StudioError(f"offset: got {offset!r}; give a byte offset") from e
        await _call(backend.log_since, name, log, offset)  # 404 (or 400) now rather than inside the stream
        poll_s = backend.follow_poll_s

        async def events() -> AsyncIterator[str]:
            position = offset
            idle = 0.0
            yield ": following\n\n"
            while not await request.is_disconnected():
                try:
                    text, position = await _call(backend.log_since, name, log, position)
                except StudioError:
                    return
                if text:
                    idle = 0.0
                    yield f"data: {json.dumps({'text': text, 'offset': position})}\n\n"
                else:
                    idle += poll_s
                    if idle >= 15:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                await asyncio.sleep(poll_s)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    @api
    async def metrics(request: Request) -> Response:
        name = request.path_params["name"]
        await _call(backend.endpoint, name)  # 404 for unknown endpoints

        def read() -> tuple[dict[str, Any], str | None]:
            try:
                return charts.endpoint_series(name), charts.note
            except PrometheusError as e:  # the page shows why its charts are empty
                return {}, str(e)

        series, note = await _call(read)
        return JSONResponse(
            {"interval_s": charts.interval_s, "source": charts.source, "note": note, "deployments": series}
        )

    @api
    async def batch_endpoint(request: Request) -> Response:
        return JSONResponse(await _call(backend.batch_endpoint, request.path_params["name"]))

    def _job_id(request: Request) -> str:
        job_id = request.path_params["job_id"]
        if not JOB_ID.match(job_id):
            raise StudioError(f"job id: got {job_id!r}; lower-case letters, digits and '-'", 404)
        return str(job_id)

    @api
    async def batch_job(request: Request) -> Response:
        return JSONResponse(await _call(backend.batch_job, request.path_params["name"], _job_id(request)))

    @api
    async def batch_invoke(request: Request) -> Response:
        body = await _json_body(request)
        job = await _call(backend.batch_invoke, request.path_params["name"], body)
        return JSONResponse(job, status_code=202)

    @api
    async def batch_cancel(request: Request) -> Response:
        job = await _call(backend.batch_cancel, request.path_params["name"], _job_id(request))
        return JSONResponse(job, status_code=202)

    @api
    async def batch_output(request: Request) -> Response:
        path = await _call(backend.batch_output, request.path_params["name"], _job_id(request))
        # A cluster's output is a copy fetched from the job API into a folder of its own: removed once sent.
        cleanup = None if isinstance(backend, LocalBackend) else BackgroundTask(shutil.rmtree, path.parent, True)
        return FileResponse(path, filename=f"{_job_id(request)}-{path.name}", background=cleanup)

    @api
    async def batch_logs(request: Request) -> Response:
        logs = await _call(backend.batch_job_logs, request.path_params["name"], _job_id(request))
        return JSONResponse({"logs": logs})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                with contextlib.suppress(Exception):  # a scrape never stops the studio
                    await run_in_threadpool(charts.sample)
                await asyncio.sleep(charts.interval_s)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            charts.close()
            backend.close()

    e = "/api/endpoints/{name}"
    b = "/api/batch/{name}"
    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/static/{name}", static, methods=["GET"]),
            Route("/api/endpoints", list_endpoints, methods=["GET"]),
            Route(e, endpoint, methods=["GET"]),
            Route(f"{e}/traffic", set_traffic, methods=["POST"]),
            Route(f"{e}/invoke", invoke, methods=["POST"]),
            Route(f"{e}/swagger.json", swagger, methods=["GET"]),
            Route(f"{e}/keys/reveal", reveal_keys, methods=["POST"]),
            Route(f"{e}/keys/regenerate", regenerate_key, methods=["POST"]),
            Route(f"{e}/logs", log_names, methods=["GET"]),
            Route(f"{e}/logs/{{log}}", log_tail, methods=["GET"]),
            Route(f"{e}/logs/{{log}}/follow", log_follow, methods=["GET"]),
            Route(f"{e}/metrics", metrics, methods=["GET"]),
            Route(b, batch_endpoint, methods=["GET"]),
            Route(f"{b}/jobs", batch_invoke, methods=["POST"]),
            Route(f"{b}/jobs/{{job_id}}", batch_job, methods=["GET"]),
            Route(f"{b}/jobs/{{job_id}}/cancel", batch_cancel, methods=["POST"]),
            Route(f"{b}/jobs/{{job_id}}/output", batch_output, methods=["GET"]),
            Route(f"{b}/jobs/{{job_id}}/logs", batch_logs, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return TokenGate(app, token, cookie_name(port))
