"""One request on its way through the local router: the live exchange with its client, and mirrored copies.

A :class:`Forward` holds the bytes for the wire, the pooled connection to the deployment
(``endpoints.local.upstream``) and one retry on a stale connection; :class:`Exchange` is a client's request and
its answer (streamed both ways, errors answered as JSON, the answer's framing kept or re-chunked);
:class:`MirrorCopy` is a background copy whose answer is dropped but counted. They see the client connection and the
router only through the two protocols below (:class:`ClientSide`, :class:`Hub`), so this module imports neither.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from endpoints.local.router_config import DEFAULT_TIMEOUT_S, RouterConfig
from endpoints.local.router_http import (
    CONTINUE_RESPONSE,
    HOP_BY_HOP_LINE,
    PIN_FIELD,
    error_response,
    status_line,
    without_hop_by_hop,
)
from endpoints.local.router_metrics import RouterMetrics
from endpoints.local.router_tracing import RouterTracing
from endpoints.local.upstream import UpstreamConnection, UpstreamError, UpstreamPool, UpstreamTimeout
from serving.logformat import TRACEPARENT

# One logger for the router process, whichever of its modules writes.
logger = logging.getLogger("endpoints.local.router")

REPLAY_MAX_BYTES = 256 * 1024  # a request up to this size is kept until answered, to replay on a stale connection
BUFFER_MAX_BYTES = 256 * 1024  # body kept while the upstream connection opens; above it the client is paused

# Why the client socket is not being read (a bit each; reading resumes when none is left).
PAUSE_PIPELINE = 1  # a pipelined request waits for the one before it
PAUSE_UPSTREAM = 2  # the deployment's socket is full
PAUSE_BUFFER = 4  # the upstream connection is still opening and the body buffer is full


class Hub(Protocol):
    """What an exchange uses of the router (``endpoints.local.router_server.RouterServer``)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def config(self) -> RouterConfig: ...

    @property
    def metrics(self) -> RouterMetrics: ...

    @property
    def tracing(self) -> RouterTracing | None: ...

    @property
    def mirrors(self) -> set[MirrorCopy]: ...

    def start_mirror(self, live: Exchange, body: bytes) -> None: ...

    def new_request_id(self) -> bytes: ...


class ClientSide(Protocol):
    """What an exchange uses of its client connection (``endpoints.local.router_client.ClientConnection``)."""

    @property
    def server(self) -> Hub: ...

    @property
    def paused(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def set_paused(self, reason: int, paused: bool) -> None: ...

    def exchange_finished(self, exchange: Exchange) -> None: ...


class Forward:
    """One request on its way to a deployment: the bytes for the wire, the connection, one retry.

    The bytes are kept until answered while they are at most ``REPLAY_MAX_BYTES``: a pooled connection the
    deployment closed just before the request was written (a restart) gets the request again on a new one.
    """

    # Per-request state starts from these class-level defaults: an instance sets only what differs, which
    # keeps object creation cheap on the hot path.
    wire_size = 0
    flushed = 0  # wire[:flushed] is written
    replayable = True
    upstream: UpstreamConnection | None = None
    connecting: asyncio.Task[UpstreamConnection] | None = None
    retried = False
    request_complete = False
    over = False  # the router is done with the upstream side (answered, failed or client gone)
    timeout = DEFAULT_TIMEOUT_S
    request_id: bytes | None = None  # the client's x-request-id, or the one generated for the deployment
    traceparent: bytes | None = None  # as the client sent it (passed on unchanged unless the router traces)
    span: Any = None  # the router's own span (endpoints.local.router_tracing), when it traces

    def __init__(self, server: Hub, pool: UpstreamPool, target: str, head_only: bool) -> None:
        self.server = server
        self.pool = pool
        self.target = target
        self.head_only = head_only
        self.wire: list[bytes] = []

    def log_ids(self) -> dict[str, Any]:
        """``extra=`` of a log line about this request: its id, trace id and deployment (``serving.logformat``)."""
        match = TRACEPARENT.fullmatch(self.traceparent) if self.traceparent is not None else None
        return {
            "request_id": self.request_id.decode("latin-1") if self.request_id else None,
            "trace_id": match.group(1).decode() if match else None,
            "deployment": self.target,
        }

    def send(self, data: bytes) -> None:
        self.wire.append(data)
        self.wire_size += len(data)

    def acquire(self, flush: bool = True) -> None:
        conn = self.pool.idle()
        if conn is None:
            self._connect()
        else:
            self._attach(conn, flush)

    def _connect(self) -> None:
        task = self.connecting = self.server.loop.create_task(self.pool.connect())
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
        self.connecting = None
        if task.cancelled():
            return
        error = task.exception()
        if self.over:
            if error is None:
                self.pool.release(task.result())  # fresh and unused: keep it for the next request
            return
        if error is not None:
            self.upstream_failed(error if isinstance(error, UpstreamError) else UpstreamError(str(error)), False)
            return
        self._attach(task.result(), True)

    def _attach(self, conn: UpstreamConnection, flush: bool) -> None:
        self.upstream = conn
        conn.start(self, self.head_only)
        if flush:
            self.flush_upstream()

    def flush_upstream(self) -> None:
        """Write what is queued; once the request is whole, the answer's silence timeout starts."""
        conn = self.upstream
        if conn is None:
            return
        wire = self.wire
        if self.flushed < len(wire):
            conn.write(wire[self.flushed] if self.flushed == len(wire) - 1 else b"".join(wire[self.flushed :]))
            if self.replayable and self.wire_size <= REPLAY_MAX_BYTES:
                self.flushed = len(wire)
            else:
                self.replayable = False
                wire.clear()
                self.flushed = 0
        if self.request_complete and not conn.request_complete:
            conn.finish_request()

    def retry(self) -> bool:
        """Replay the request on a new connection after a stale pooled one, once; ``False`` if it cannot."""
        if not self.replayable or self.retried or self.over:
            return False
        self.retried = True
        self.upstream = None
        self.flushed = 0
        self._connect()
        return True

    def drop_upstream(self) -> None:
        """Stop talking to the deployment: close a connection mid-exchange, cancel a connect."""
        self.over = True
        conn, self.upstream = self.upstream, None
        if conn is not None:
            conn.abandon()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None

    # ResponseSink (the subclasses say what an answer means to them)
    def response_head(self, status: int, fields: bytes, bodiless: bool) -> bool:
        raise NotImplementedError

    def response_body(self, data: bytes) -> None:
        raise NotImplementedError

    def response_end(self) -> None:
        raise NotImplementedError

    def upstream_failed(self, error: UpstreamError, stale: bool) -> None:
        raise NotImplementedError

    def response_flush(self) -> None:
        pass

    def upstream_paused(self, paused: bool) -> None:
        pass


class Exchange(Forward):
    """One client request and its answer."""

    error: tuple[int, str] | None = None  # answered by the router itself once active
    chunked_in = False
    expect_continue = False
    body_seen = 0
    mirror: str | None = None
    mirror_body: list[bytes] | None = None
    mirror_start = b""  # request line and headers without host and framing, for the mirror's copy
    active = False
    response_started = False
    response_done = False
    status = 0  # the answer's status code once its head is out (0: none yet; counted as 499 if the client leaves)
    routed_by = "weight"
    arrived = 0.0  # perf_counter() when the request head began (the loop's clock counts whole milliseconds)
    counted = False
    resp_chunked = False
    discarding = False  # the rest of the request body is read and dropped

    def __init__(
        self,
        client: ClientSide,
        pool: UpstreamPool | None,
        target: str | None,
        method: bytes,
        keep_alive: bool,
        http11: bool,
    ) -> None:
        self.server = client.server
        self.pool = pool  # type: ignore[assignment]
        self.target = target or ""
        self.head_only = method == b"HEAD"
        self.wire = []
        self.client = client
        self.method = method
        self.keep_alive = keep_alive
        self.http11 = http11
        self.limit = client.server.config.max_body_bytes
        self.out: list[bytes] = []

    # --- request side (called by the client connection)
    def activate(self, flush: bool) -> None:
        """Its turn has come (the requests before it on the connection are answered)."""
        self.active = True
        if self.error is not None:
            self.answer(*self.error)
            return
        if self.expect_continue and not self.request_complete:
            self.client.write(CONTINUE_RESPONSE)
            self.expect_continue = False  # answered: the body comes now
        self.acquire(flush)

    def body(self, data: bytes) -> None:
        if self.discarding:
            return
        self.body_seen += len(data)
        if self.body_seen > self.limit:
            self.discarding = True
            self.error = (413, f"request body is larger than {self.limit} bytes")
            self.mirror_body = None
            if self.active:
                self.answer(*self.error)
            return
        if self.mirror_body is not None:
            self.mirror_body.append(data)
        if self.chunked_in:
            self.send(b"%x\r\n" % len(data))
            self.send(data)
            self.send(b"\r\n")
        else:
            self.send(data)
        if self.upstream is None and self.active and self.wire_size - self.flushed > BUFFER_MAX_BYTES:
            self.client.set_paused(PAUSE_BUFFER, True)

    def complete(self) -> None:
        """The request is read to its end."""
        self.request_complete = True
        if self.discarding:
            self.maybe_finish()
            return
        if self.chunked_in:
            self.send(b"0\r\n\r\n")
        if self.mirror_body is not None and self.mirror is not None:
            self.server.start_mirror(self, b"".join(self.mirror_body))
            self.mirror_body = None

    def _attach(self, conn: UpstreamConnection, flush: bool) -> None:
        super()._attach(conn, flush)
        if self.client.paused & PAUSE_BUFFER:
            self.client.set_paused(PAUSE_BUFFER, False)

    # --- answers made by the router
    def answer(self, status: int, message: str) -> None:
        """Answer the client with a JSON error (the upstream side, if any, is dropped)."""
        self.drop_upstream()
        self._unpause_client()
        if self.response_started:
            self.client.close()
            return
        self.response_started = self.response_done = True
        self.status = status
        fields = self.correlation()
        if not self.request_complete and self.expect_continue:
            # The client waits for a 100 that was not sent before it sends its body: close instead of waiting.
            self.client.write(error_response(status, message, True, fields))
            self.client.close()
            return
        if not self.request_complete:
            self.discarding = True
        self.client.write(error_response(status, message, not self.keep_alive, fields))
        self.maybe_finish()

    def correlation(self) -> bytes:
        """Header lines that tie a router's own answer to its request, as the serving layer's answers do: the request
        id (the client's, else the one the deployment got, else a new one) and a valid ``traceparent``."""
        rid = self.request_id or self.server.new_request_id()
        if len(rid) > 100 or b"\r" in rid or b"\n" in rid:  # the serving layer refuses such an id: not echoed
            rid = self.server.new_request_id()
        lines = [b"x-request-id: ", rid, b"\r\nx-ms-request-id: ", rid, b"\r\n"]
        if self.traceparent is not None and TRACEPARENT.fullmatch(self.traceparent):
            lines += [b"traceparent: ", self.traceparent, b"\r\n"]
        return b"".join(lines)

    def _unpause_client(self) -> None:
        # The upstream side is over: whatever it paused on the client no longer applies (the rest of the body
        # is read and dropped, or the next request comes).
        if self.client.paused & (PAUSE_UPSTREAM | PAUSE_BUFFER):
            self.client.set_paused(PAUSE_UPSTREAM | PAUSE_BUFFER, False)

    def maybe_finish(self) -> None:
        if self.response_done and self.request_complete and self.active:
            self.client.exchange_finished(self)

    def client_gone(self) -> None:
        self.drop_upstream()
        self.mirror_body = None

    # --- ResponseSink
    def response_head(self, status: int, fields: bytes, bodiless: bool) -> bool:
        lower = b"\n" + fields.lower()
        has_length = b"\ncontent-length:" in lower
        framed = has_length or b"\ntransfer-encoding:" in lower
        if HOP_BY_HOP_LINE.search(lower) is not None:
            fields = without_hop_by_hop(fields)  # rare: most answers have no hop-by-hop header to drop
        self.status = status
        parts = [status_line(status), fields]
        parts += [PIN_FIELD, b": ", self.target.encode(), b"\r\n"]
        if not has_length and not bodiless:
            if self.http11:
                self.resp_chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0: the end of the connection ends the body
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self.out.append(b"".join(parts))
        self.response_started = True
        return framed

    def response_body(self, data: bytes) -> None:
        if not data:
            return
        if self.resp_chunked:
            self.out += [b"%x\r\n" % len(data), data, b"\r\n"]
        else:
            self.out.append(data)

    def response_flush(self) -> None:
        out = self.out
        if out:
            self.client.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def response_end(self) -> None:
        self.upstream = None
        self.over = True
        self._unpause_client()
        if self.resp_chunked:
            self.out.append(b"0\r\n\r\n")
        self.response_flush()
        self.response_done = True
        if not self.request_complete:
            self.discarding = True  # answered early (e.g. 401 before the body): the rest is dropped
        self.maybe_finish()

    def upstream_failed(self, error: UpstreamError, stale: bool) -> None:
        self.upstream = None
        if self.over or (stale and self.retry()):
            return
        if self.response_started:
            # The status line is out; all that is left is to cut the response short.
            logger.warning("deployment %s broke off its response: %s", self.target, error, extra=self.log_ids())
            self.over = True
            self._unpause_client()
            self.response_flush()
            self.client.close()
        elif isinstance(error, UpstreamTimeout):
            self.answer(504, f"deployment {self.target!r} did not answer within {self.timeout:g} s")
        else:
            logger.warning("deployment %s unreachable: %s", self.target, error, extra=self.log_ids())
            self.answer(502, f"deployment {self.target!r} is not reachable")

    def upstream_paused(self, paused: bool) -> None:
        self.client.set_paused(PAUSE_UPSTREAM, paused)


class MirrorCopy(Forward):
    """A background copy of a live request; everything about its answer is dropped (but counted)."""

    failed = False
    status = 0

    def __init__(self, server: Hub, pool: UpstreamPool, target: str, request: bytes, head_only: bool) -> None:
        super().__init__(server, pool, target, head_only)
        self.send(request)
        self.request_complete = True
        self.timeout = server.config.timeouts_s.get(target, DEFAULT_TIMEOUT_S)

    def response_head(self, status: int, fields: bytes, bodiless: bool) -> bool:
        self.status = status
        if status >= 500:
            logger.info("mirror %s answered %d (discarded)", self.target, status, extra=self.log_ids())
            self._failed()
        lower = b"\n" + fields.lower()
        return b"\ncontent-length:" in lower or b"\ntransfer-encoding:" in lower

    def response_body(self, data: bytes) -> None:
        pass

    def response_end(self) -> None:
        self.upstream = None
        self.server.mirrors.discard(self)
        self.end_span()

    def end_span(self) -> None:
        """End the copy's span (when the router traces), once."""
        span, self.span = self.span, None
        if span is not None and self.server.tracing is not None:
            self.server.tracing.end(span, self.status, self.request_id)

    def upstream_failed(self, error: UpstreamError, stale: bool) -> None:
        self.upstream = None
        if stale and self.retry():
            return
        logger.info("mirror %s failed (discarded): %s", self.target, type(error).__name__, extra=self.log_ids())
        self._failed()
        self.server.mirrors.discard(self)
        self.status = 0
        self.end_span()

    def _failed(self) -> None:
        if not self.failed:  # a 5xx that then breaks off is one failure
            self.failed = True
            RouterMetrics.bump(self.server.metrics.mirror_failed, self.target)
