"""The production layer as one pure ASGI middleware around any ASGI scoring app.

Order per request: health routes (``/ready``, ``/metrics`` answered here, ``GET|HEAD /`` passed through) ->
authentication (``/score``, ``/swagger.json`` and any other route) -> body limits known from the headers ->
admission (``/score`` only) -> the app, in its own task, under the request deadline, reading a size-limited
(and gzip/deflate-decoded) body -> metrics and one JSON access-log line.

Every answer this layer gives itself is ``{"error": "<message>"}`` with ``x-request-id``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from serving.frontend.admission import Admission, Admit
from serving.frontend.auth import Authenticator, build_authenticator, parse_bearer
from serving.frontend.body import SUPPORTED_ENCODINGS, BadEncoding, BodyTooLarge, LimitedBody
from serving.frontend.collector import DataCollector
from serving.frontend.metrics import CONTENT_TYPE, OTHER_ROUTE, FrontendMetrics, multiprocess_dir
from serving.frontend.settings import DataCollectorSettings, FrontendSettings
from serving.frontend.tracing import Tracing, tracing_from_env
from serving.logformat import TRACEPARENT, IsoTime, process_identity
from serving.requestid import new_request_id

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("serving.access")
log = logging.getLogger("serving.frontend")

UNAUTHORIZED = "missing or invalid credentials"
MAX_REQUEST_ID_CHARS = 100
_JSON = (b"content-type", b"application/json")
_HEALTH_ROUTES = ("/", "/ready", "/metrics")
_KNOWN_ROUTES = frozenset(("/", "/ready", "/metrics", "/score", "/swagger.json"))
_DISCONNECT: Message = {"type": "http.disconnect"}
_current_task = asyncio.current_task
_QUIET_ROUTES = frozenset(("/ready", "/metrics"))
_PLAIN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))
_CUT_SHORT = b'{"error":"the instance shut down before the request finished; retry"}'
# How often deadlines are checked (408 at most this late) and how the metrics flush is paced.
TICK_S = 0.05
# Access-log lines written at once when this many wait for the next tick (bounds the memory and the batch).
LOG_BATCH_LINES = 256
# One access-log line, less its closing brace (a "reason" may follow): see Frontend.__call__.
# serving.logformat's fields (time, level, logger, endpoint, deployment, request_id, trace_id, message), then the
# request's own: one format for every line of every process. The part from "message" to "duration_ms" depends only on
# the method, route and status: made once per combination (_ACCESS_MIDDLE) and kept (at most _MIDDLES_KEPT of them).
_ACCESS_HEAD = '{"time":"%s","level":"info","logger":"serving.access",%s"request_id":%s,"trace_id":%s,%s%d.%03d'
_ACCESS_MIDDLE = '"message":"%s %s %d","method":"%s","route":"%s","status":%d,"duration_ms":'
_MIDDLES_KEPT = 1024


class _Exchange:
    """One request's response state, shared by the frontend and the app."""

    __slots__ = (
        "body",
        "body_failed",
        "buffered",
        "captured",
        "captured_room",
        "client_gone",
        "closed",
        "complete",
        "limit",
        "reason",
        "request_id",
        "response_headers",
        "send",
        "slot",
        "started",
        "status",
        "timed_out",
        "traceparent",
    )

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.body: Receive | None = None  # where app_receive reads: the server's receive, or a LimitedBody over it
        self.limit = 0
        self.body_failed = False
        self.status = 0
        self.started = False
        self.complete = False
        self.closed = False  # the frontend answered: the app's further messages are dropped
        self.reason = ""
        self.client_gone = False
        self.slot = False  # holds an admission slot
        self.timed_out = False
        self.buffered: bytes | None = None  # a /score body read whole before admission, handed to the app once
        self.traceparent: bytes | None = None  # a valid W3C traceparent of the request: echoed in the answer
        self.captured: list[bytes] | None = None  # the app's response chunks, kept for the data collector
        self.captured_room = 0  # bytes the data collector's queue could still take of them
        self.response_headers: Iterable[tuple[bytes, bytes]] = ()

    async def read_body(self) -> bytes | None:
        """Read the whole (size-limited, decoded) body; None when it cannot be had whole.

        None means the client went away mid-body, or the body passed the limit or was corrupt (413/400 answered):
        the app must not be called with what arrived so far.
        """
        message = await self.app_receive()
        if message["type"] != "http.request":
            return None
        if not message.get("more_body", False):  # the usual case: the whole body in one message
            body: bytes = message.get("body", b"")
            return body
        chunks: list[bytes] = []
        while True:
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
            message = await self.app_receive()
            if message["type"] != "http.request":
                return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def replay_receive(self) -> Message:
        """The app's ``receive`` once the body was read: the body in one message, then the server's messages."""
        body = self.buffered
        if body is not None:
            self.buffered = None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.app_receive()

    async def app_send(self, message: Message) -> None:
        if self.closed:
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.status = message["status"]
            if self.captured is not None:
                self.response_headers = message.get("headers", ())
            if self.traceparent is not None:
                message = {**message, "headers": [*message.get("headers", ()), (b"traceparent", self.traceparent)]}
        elif kind == "http.response.body":
            if self.captured is not None:
                chunk = message.get("body", b"")
                if chunk:
                    self.captured_room -= len(chunk)
                    if self.captured_room < 0:
                        self.captured = None  # larger than the collector's queue can ever hold: not kept
                    else:
                        self.captured.append(chunk)
            if not message.get("more_body", False):
                self.complete = True
        await self.send(message)

    async def app_receive(self) -> Message:
        """The app's ``receive``: notes a disconnect, and answers 413/400 when the body is too large or corrupt."""
        if self.body_failed:
            return _DISCONNECT
        assert self.body is not None
        try:
            message = await self.body()
            if message["type"] == "http.disconnect":
                self.client_gone = True
            return message
        except BodyTooLarge:
            self.body_failed = True
            await self.error(
                413,
                f"request body is over the limit of {self.limit} bytes",
                "body_too_large",
                headers=[(b"connection", b"close")],
            )
        except BadEncoding as e:
            self.body_failed = True
            await self.error(400, str(e), "bad_encoding", headers=[(b"connection", b"close")])
        # The app sees the client "disconnect"; whatever it sends next is dropped.
        return _DISCONNECT

    def claim(self, status: int, reason: str) -> bool:
        """Take the response over from the app unless it already started one; True when taken."""
        if self.started or self.closed:
            return False
        self.closed = self.started = True
        self.status = status
        self.reason = reason
        return True

    async def write(
        self,
        status: int,
        body: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        content_type: tuple[bytes, bytes] = _JSON,
    ) -> None:
        """Send a whole response (after :meth:`claim`), with the request id and trace context a scored answer has."""
        rid = self.request_id.encode()
        fields = [
            content_type,
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid),
            (b"x-ms-request-id", rid),
            *headers,
        ]
        if self.traceparent is not None:
            fields.append((b"traceparent", self.traceparent))
        await self.send({"type": "http.response.start", "status": status, "headers": fields})
        await self.send({"type": "http.response.body", "body": body})
        self.complete = True

    async def reply(
        self,
        status: int,
        body: bytes,
        *,
        reason: str = "",
        headers: Iterable[tuple[bytes, bytes]] = (),
        content_type: tuple[bytes, bytes] = _JSON,
    ) -> bool:
        """Answer from the frontend unless the app already started a response; True when answered."""
        if not self.claim(status, reason):
            return False
        await self.write(status, body, headers, content_type)
        return True

    async def error(self, status: int, message: str, reason: str = "", **kw: Any) -> bool:
        return await self.reply(status, orjson.dumps({"error": message}), reason=reason, **kw)


class Frontend:
    """The ASGI app returned by :func:`build_frontend`; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        settings: FrontendSettings,
        is_ready: Callable[[], bool],
        authenticator: Authenticator | None,
        tracing: Tracing | None = None,
        collector: DataCollectorSettings | None = None,
    ) -> None:
        """Wrap ``app``; use :func:`build_frontend` rather than this constructor."""
        self.app = app
        self.tracing = tracing
        self.settings = settings
        self.is_ready = is_ready
        self.auth = authenticator
        # Key checks never wait: called directly, without a coroutine per request.
        self._check_now: Callable[[str], bool] | None = getattr(authenticator, "check_now", None)
        self.admission = Admission(settings.max_concurrent_requests)
        self.metrics = FrontendMetrics()
        self.collector: DataCollector | None = None
        if collector is not None:
            written, dropped = self.metrics.collector_written, self.metrics.collector_dropped
            self.collector = DataCollector(
                collector,
                *process_identity(),
                on_written=lambda collection, n: written.labels(collection).inc(n),
                on_dropped=lambda reason, n: dropped.labels(reason).inc(n),
            )
        self.draining = False
        self._background: set[asyncio.Future[None]] = set()
        self._log_lines: list[str] = []
        self._line_middles: dict[tuple[str, str, int], str] = {}
        self._iso = IsoTime()
        endpoint, deployment = process_identity()
        self._identity = (
            f'"endpoint":{orjson.dumps(endpoint).decode()},"deployment":{orjson.dumps(deployment).decode()},'
        )
        self._deadlines: dict[_Exchange, tuple[float, asyncio.Task[Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout_s = settings.request_timeout_ms / 1000
        self._queue_wait_s = settings.max_queue_wait_ms / 1000
        self._prefix = settings.path_prefix
        # Retry-After in whole seconds (RFC 9110); a queue that drains within the wait frees up within a second.
        self._retry_after = str(max(1, round(settings.max_queue_wait_ms / 1000))).encode()

    def flush_log(self) -> None:
        """Write the access-log lines not yet written (the server calls this when it stops)."""
        lines, self._log_lines = self._log_lines, []
        if lines:
            lines.append("")
            # stderr closed or gone: the responses were sent; the lines are dropped.
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write("\n".join(lines))

    def close(self) -> None:
        """Write what is left: the access-log lines and the data collector's queue (bounded); the server calls
        this when it stops."""
        self.flush_log()
        if self.collector is not None:
            self.collector.close()

    def begin_drain(self) -> None:
        """Stop admitting scoring requests (503, connection closed); ``/`` and in-flight requests continue.

        The serving process calls this on SIGTERM, before uvicorn's graceful shutdown; ``/ready`` answers 503
        as soon as the ``is_ready`` callable does.
        """
        self.draining = True

    def _route(self, path: str) -> str:
        if self._prefix:
            if not path.startswith(self._prefix):
                return OTHER_ROUTE
            path = path[len(self._prefix) :] or "/"
        return path if path in _KNOWN_ROUTES else OTHER_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        loop = self._loop  # see _current_task (inline: once per request)
        task = _current_task(loop) if loop is not None else None
        if task is None:
            task = self._current_task()  # also starts the ticker (deadlines, access log) on this loop
        authorization = content_length = encoding = request_id = traceparent = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                content_length = value
            elif name == b"content-encoding":
                encoding = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"traceparent":
                traceparent = value
        path = scope["path"]
        route = path if not self._prefix and path in _KNOWN_ROUTES else self._route(path)
        if not request_id:
            rid = new_request_id()
            # The app echoes x-request-id: give it ours so that its answer and our log line agree (an empty one is
            # replaced, as if absent).
            headers = scope["headers"]
            if request_id is not None:
                headers = [h for h in headers if h[0] != b"x-request-id"]
                request_id = None
            scope = {**scope, "headers": [*headers, (b"x-request-id", rid.encode())]}
        elif 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
            rid = request_id.decode("latin-1")
        else:
            rid = new_request_id()  # the app answers 431 for an over-long id; our own answers use a fresh one
        ex = _Exchange(send, rid)
        trace = "null"
        if traceparent is not None and TRACEPARENT.fullmatch(traceparent):
            ex.traceparent = traceparent
            trace = f'"{traceparent[3:35].decode()}"'
        tracing = self.tracing
        if tracing is not None and route in _HEALTH_ROUTES:
            tracing = None  # probes and scrapes (every few seconds, all day) are not traced
        span = None if tracing is None else tracing.start(scope["method"], route, ex.traceparent, scope["headers"])
        try:
            await self._handle(scope, receive, ex, task, route, authorization, content_length, encoding, start)
        except asyncio.CancelledError:
            # The server cancels what is still running when the drain timeout ends: answer 503 (retry elsewhere)
            # rather than the server's bare 500, unless a response already started.
            if not (self.draining and ex.claim(503, "draining")):
                raise
            log.warning("request %s %s %s cut short by the drain timeout", rid, scope["method"], scope["path"])
            await ex.write(503, _CUT_SHORT, [(b"connection", b"close"), (b"retry-after", b"1")])
        finally:
            duration = time.perf_counter() - start
            # 499 (nginx's "client closed request"): the client went away before it could get an answer.
            status = 499 if ex.client_gone or not ex.status else ex.status
            self.metrics.observe_request(route, status, duration, ex.reason)
            if tracing is not None:
                tracing.end(span, status, rid, ex.reason)
            if access_log.isEnabledFor(logging.INFO) and not (
                # Probes and scrapes (every few seconds, all day) are counted in the metrics, logged at debug only.
                route in _QUIET_ROUTES and status == 200 and not access_log.isEnabledFor(logging.DEBUG)
            ):
                # The JSON object written out by hand (field order as documented), with integer arithmetic rather
                # than float formatting (half the cost of the line). Our own request ids are hex and dashes; a
                # client's id (the only client-controlled text) goes through orjson, and so does a method that is
                # not one of the usual ones (it passed the HTTP parser's token check).
                method = scope["method"]
                if method not in _PLAIN_METHODS:
                    method = orjson.dumps(method).decode()[1:-1]
                quoted = f'"{rid}"' if request_id is None else orjson.dumps(rid).decode()
                millis, frac = divmod(int(duration * 1_000_000), 1000)
                middles = self._line_middles
                middle = middles.get((method, route, status))
                if middle is None:
                    middle = _ACCESS_MIDDLE % (method, route, status, method, route, status)
                    if len(middles) < _MIDDLES_KEPT:
                        middles[(method, route, status)] = middle
                line = _ACCESS_HEAD % (self._iso(), self._identity, quoted, trace, middle, millis, frac)
                line = f'{line},"reason":"{ex.reason}"}}' if ex.reason else f"{line}}}"
                handlers = access_log.handlers
                if len(handlers) == 1 and type(handlers[0]) is _StderrHandler and not access_log.filters:
                    # Our own bare stderr handler: skip the logging machinery (it costs more than the rest of the
                    # frontend together) and write the lines in batches: the ticker writes them every TICK_S (a
                    # write per request costs more than the rest of the layer over a real socket), or at once
                    # when LOG_BATCH_LINES are waiting; flush_log() writes what is left at shutdown.
                    self._log_lines.append(line)
                    if len(self._log_lines) >= LOG_BATCH_LINES:
                        self.flush_log()
                else:
                    access_log.info(line)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        ex: _Exchange,
        task: asyncio.Task[Any],
        route: str,
        authorization: bytes | None,
        content_length: bytes | None,
        encoding: bytes | None,
        start: float,
    ) -> None:
        method = scope["method"]
        if route in _HEALTH_ROUTES:
            if route == "/":
                if method in ("GET", "HEAD"):
                    await self.app(scope, receive, ex.app_send)  # liveness: never gated
                    return
            elif method not in ("GET", "HEAD"):
                await ex.error(
                    405, f"method {method} not allowed on {route}; use GET", headers=[(b"allow", b"GET, HEAD")]
                )
                return
            elif route == "/ready":
                if self.is_ready() and not self.draining:
                    await ex.reply(200, b'{"status":"ready"}')
                else:
                    await ex.error(503, "draining" if self.draining else "not ready")
                return
            else:
                self.metrics.flush(self.admission.running, self.admission.waiting)
                text = await asyncio.to_thread(self.metrics.render) if multiprocess_dir() else self.metrics.render()
                await ex.reply(200, text, content_type=(b"content-type", CONTENT_TYPE.encode()))
                return

        # Preflight requests carry no credentials by design (CORS); they never reach run().
        if self.auth is not None and method != "OPTIONS":
            credential = parse_bearer(authorization)
            if credential is None or not (
                self._check_now(credential) if self._check_now is not None else await self.auth.check(credential)
            ):
                await ex.error(401, UNAUTHORIZED, "unauthorized", headers=[(b"www-authenticate", b"Bearer")])
                return

        scoring = route == "/score" and method != "OPTIONS"
        if scoring and self.draining:
            await ex.error(
                503,
                "draining: the instance is shutting down; retry",
                "draining",
                headers=[(b"connection", b"close"), (b"retry-after", b"1")],
            )
            return

        limit = self.settings.max_body_bytes
        coding = "identity"
        if encoding is not None:
            coding = encoding.decode("latin-1").strip().lower()
            if coding not in SUPPORTED_ENCODINGS:
                await ex.error(
                    415, f"unsupported Content-Encoding {coding[:40]!r}; use gzip, deflate or identity", "bad_encoding"
                )
                return
        declared = -1
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                declared = -1  # the HTTP server rejects a malformed Content-Length before we run
            if declared > limit and coding == "identity":
                await ex.error(
                    413,
                    f"request body is {declared} bytes; the limit is {limit}",
                    "body_too_large",
                    headers=[(b"connection", b"close")],
                )
                return
        if coding != "identity":
            # The app sees the decoded body, so it must not see the encoding or the encoded length.
            scope = {
                **scope,
                "headers": [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")],
            }

        deadline = start + self._timeout_s
        # Identity bodies with a Content-Length within the limit need no counting: the HTTP server frames the body
        # by that length.
        sized = coding == "identity" and content_length is not None and 0 <= declared <= limit
        ex.limit = limit
        try:
            ex.body = receive if sized else LimitedBody(receive, limit, coding)
            # The app runs inline (no task, no timer per request): the ticker checks deadlines every TICK_S. At the
            # deadline the 408 is sent and the slot freed by the ticker itself, so both happen on time even when
            # the app cannot be cancelled promptly (a synchronous run() in a thread that shields the await).
            self._deadlines[ex] = (deadline, task)
            app_receive = ex.app_receive
            request_body = b""
            if scoring:
                # The body is read whole before admission: a slow (or stalled) upload waits without a slot, bounded
                # by the request deadline (408), so slow clients cannot starve the others; and run() is never
                # called with a body that did not arrive whole (client gone, 413, corrupt encoding).
                body = await ex.read_body()
                if body is None:
                    return
                if not (self.admission.try_acquire() or await self._admit(ex, deadline)):
                    return
                ex.slot = True
                ex.buffered = request_body = body
                app_receive = ex.replay_receive
            collector = self.collector
            if scoring and collector is not None and collector.wants(ex.request_id):
                ex.captured = []
                ex.captured_room = collector.max_bytes - len(request_body)
                await self.app(scope, app_receive, ex.app_send)
                if ex.complete and not ex.closed and ex.captured is None:
                    collector.drop("queue_full")
                elif ex.complete and not ex.closed:
                    collector.submit(
                        ex.request_id,
                        method,
                        scope["path"],
                        scope["headers"],
                        request_body,
                        ex.captured,
                        ex.response_headers,
                        ex.status,
                        ex.traceparent,
                    )
            else:
                await self.app(scope, app_receive, ex.app_send)
        except asyncio.CancelledError:
            if not ex.timed_out:
                raise
            task.uncancel()  # our own cancellation: handled, not propagated to the server
        except Exception as error:
            if ex.closed:
                pass  # we answered (413/400/408); the app failing on the "disconnect" is expected
            elif ex.client_gone:  # nobody to answer: logged as 499
                log.info("request %s: client disconnected; the scoring app ended with %r", ex.request_id, error)
            else:
                log.error("request %s: the scoring app raised", ex.request_id, exc_info=error)
                await ex.error(500, "internal server error", "app_error")
        finally:
            self._deadlines.pop(ex, None)
            self._release(ex)
        if scoring and not ex.timed_out:
            self.metrics.observe_run(time.perf_counter() - start)

    def _release(self, ex: _Exchange) -> None:
        if ex.slot:
            ex.slot = False
            self.admission.release()

    async def _admit(self, ex: _Exchange, deadline: float) -> bool:
        """The slow path of admission: wait in the queue, or answer 429 (or 408 when the deadline comes first)."""
        remaining = deadline - time.perf_counter()
        wait_s = min(self._queue_wait_s, remaining)
        outcome = await self.admission.acquire(wait_s)
        if outcome is Admit.ADMITTED:
            return True
        if outcome is Admit.WAIT_EXPIRED and remaining < self._queue_wait_s:
            await ex.error(
                408, f"request timed out after {self.settings.request_timeout_ms} ms waiting for a slot", "timeout"
            )
            return False
        await ex.error(
            429,
            f"too many requests: {self.admission.limit} running and {self.admission.waiting} waiting; retry later",
            "overloaded",
            headers=[(b"retry-after", self._retry_after)],
        )
        return False

    def _current_task(self) -> asyncio.Task[Any]:
        """The running task; starts the ticker on the first request, or when the frontend now serves another loop.

        ``asyncio.get_running_loop()`` (and ``current_task()`` without a loop) costs a ``getpid`` system call in
        Python 3.11; asking the known loop for its current task does not, and finds none when another loop runs.
        """
        loop = self._loop
        task = asyncio.current_task(loop) if loop is not None else None
        if task is None:
            self._start_ticker()
            task = asyncio.current_task()
            assert task is not None
        return task

    def _start_ticker(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.call_later(TICK_S, self._tick, 0)

    def _tick(self, count: int) -> None:
        """Every TICK_S: answer 408 for requests past their deadline and write the access log; every second: flush
        the metrics."""
        loop = self._loop
        if loop is None or loop.is_closed() or loop is not asyncio.get_running_loop():
            return  # superseded by a ticker on another loop
        try:
            if self._deadlines:
                now = time.perf_counter()
                late = [(ex, task) for ex, (deadline, task) in self._deadlines.items() if deadline <= now]
                for ex, task in late:
                    del self._deadlines[ex]
                    self._on_timeout(ex, task)
            self.flush_log()
            count += 1
            if count * TICK_S >= 1.0:
                count = 0
                self.metrics.flush(self.admission.running, self.admission.waiting)
        except Exception:
            log.exception("frontend ticker failed; continuing")
        finally:
            loop.call_later(TICK_S, self._tick, count)

    def _on_timeout(self, ex: _Exchange, task: asyncio.Task[Any]) -> None:
        ex.timed_out = True
        self._release(ex)
        if ex.claim(408, "timeout"):
            body = orjson.dumps({"error": f"request timed out after {self.settings.request_timeout_ms} ms"})
            # Connection: close, so that a client reusing the connection does not wait for the app to unwind.
            reply = asyncio.ensure_future(ex.write(408, body, [(b"connection", b"close")]))
            self._background.add(reply)
            reply.add_done_callback(self._background.discard)
        else:
            ex.reason = "timeout"  # the app started its response: it is cut short
        task.cancel()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (pytest and runners swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_access_log() -> None:
    """Access lines are whole JSON objects: write them bare, not under the root logger's text prefix.

    Left alone when the ``serving.access`` logger already has a handler (the host process configured it).
    """
    if access_log.handlers:
        return
    access_log.addHandler(_StderrHandler())
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def build_frontend(
    app: ASGIApp,
    settings: FrontendSettings,
    is_ready: Callable[[], bool],
    tracer_provider: Any = None,
    collector: DataCollectorSettings | None = None,
) -> Frontend:
    """Wrap the ASGI scoring ``app`` with auth, admission, timeouts, body limits, readiness, metrics and traces.

    Args:
        app: Any ASGI app serving ``/``, ``/score`` and ``/swagger.json``.
        settings: Usually ``FrontendSettings.from_env()`` (for several workers, ``.for_worker(i, n)``).
        is_ready: Called per ``GET /ready``; True once the model's ``init()`` finished in this worker.
        tracer_provider: An OpenTelemetry ``TracerProvider`` for a span per request (default None: OTLP export
            when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else no spans; ``serving.frontend.tracing``).
        collector: Payload logging (default None: ``DataCollectorSettings.from_env()``, itself None unless
            ``ENDPOINTS_DATA_COLLECTOR_PATH`` is set; ``serving.frontend.collector``).

    Raises:
        FrontendSettingsError: Auth inputs (keys folder, signing key file) are missing or unusable, or OTLP
            export is asked for without the OpenTelemetry SDK installed.

    Access-log lines (one JSON object per request, never the Authorization header) go to the
    ``serving.access`` logger; unless it already has a handler, they are written bare to stderr.
    """
    tracing = Tracing(tracer_provider) if tracer_provider is not None else tracing_from_env()
    if collector is None:
        collector = DataCollectorSettings.from_env()
    frontend = Frontend(app, settings, is_ready, build_authenticator(settings), tracing, collector)
    _configure_access_log()
    # Lines still waiting for the ticker when the process ends (hosts that do not call flush_log themselves).
    flush = weakref.WeakMethod(frontend.close)
    atexit.register(lambda: (method := flush()) is not None and method())
    return frontend
