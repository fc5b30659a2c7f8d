"""The local router: one endpoint's URL in front of its deployments' serving processes.

It applies the decision of ``endpoints.local.routing`` (the one source of the rules) and moves bytes. It is
written as asyncio Protocols (uvloop when installed) with the ``httptools`` (llhttp) parser on both sides,
not as an ASGI app: the ASGI layer (a task, ``receive``/``send`` coroutines and message dicts per request)
cost as much CPU per request as everything else the router does (``bench/results/router.md``). Requests are
handled in the protocol callbacks themselves; the only timer is one sweeper for all timeouts.

- request and response bodies are streamed, never buffered whole (a request also goes to the mirror: its
  copy is kept up to the body limit); the body limit is enforced by ``Content-Length`` and while streaming
  (413); request framing is kept (length or chunked), responses without a length are re-chunked;
- hop-by-hop headers (RFC 9110 section 7.6.1: ``Connection`` and the fields it lists, ``Keep-Alive``,
  ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) are dropped both ways; every
  other header passes through, ``Authorization`` included: the serving processes check credentials, as
  in the cluster; ``Expect: 100-continue`` is answered by the router once the request is routed;
- ``x-request-id`` passes through, or one is generated so that the live and the mirrored copy share it;
- the response names the deployment that answered in ``azureml-model-deployment``, as Azure's endpoints do;
- mirrored copies go through their own connection pool with bounded concurrency; their answers, errors
  and slowness are dropped, so nothing about the mirror reaches the client;
- keep-alive and pipelined requests are answered in order; a client that is silent too long is closed
  (idle keep-alive), answered 408 (request head or body too slow: slowloris); a deployment that is silent
  too long is answered 504, one that is unreachable or breaks off before its answer 502;
- the hop to the deployments is ``endpoints.local.upstream`` (keep-alive pools of protocol connections).

The routing table is read from a JSON file at start and again on ``SIGHUP`` (``endpoints local update``).
With ``--metrics-port``, Prometheus metrics (requests by deployment, status and how they were routed, durations,
mirror copies) are served there (``endpoints.local.router_metrics``).
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import logging
import re
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools

from contract import serving as _contract
from contract.serving import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_BODY_BYTES
from endpoints.local.router_metrics import RouterMetrics
from endpoints.local.router_tracing import RouterTracing, router_tracing_from_env
from endpoints.local.routing import PIN_HEADER, Router, RoutingTable
from endpoints.local.upstream import UpstreamConnection, UpstreamError, UpstreamPool, UpstreamTimeout
from serving import logformat
from serving.logformat import TRACEPARENT

logger = logging.getLogger("endpoints.local.router")

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_KEEPALIVE_TIMEOUT_S = float(_contract.DEFAULT_KEEPALIVE_TIMEOUT_S)
DEFAULT_BODY_TIMEOUT_S = 30.0
MIRROR_CONCURRENCY = 32
REPLAY_MAX_BYTES = 256 * 1024  # a request up to this size is kept until answered, to replay on a stale connection
BUFFER_MAX_BYTES = 256 * 1024  # body kept while the upstream connection opens; above it the client is paused
SWEEP_INTERVAL_S = 0.25  # resolution of every timeout
# Request-head limits (gunicorn's, as the serving process: serving.protocol): the request target, the number of header
# fields, one field (name + value), and the bytes an incomplete head may hold (checked after each read).
MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8190
MAX_HEAD_BYTES = MAX_REQUEST_LINE + 2 + MAX_HEADER_FIELDS * (MAX_HEADER_FIELD_BYTES + 2) + 2
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
_HOP = frozenset(h.encode() for h in HOP_BY_HOP)
_PIN = PIN_HEADER.encode()
_NO_BODY_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A hop-by-hop field at the start of a line of a lower-cased head (preceded by "\n").
_HOP_LINE = re.compile(rb"\n(?:" + b"|".join(re.escape(h) for h in sorted(_HOP)) + rb")[ \t]*:")

# Why the client socket is not being read (a bit each; reading resumes when none is left).
_PAUSE_PIPELINE = 1  # a pipelined request waits for the one before it
_PAUSE_UPSTREAM = 2  # the deployment's socket is full
_PAUSE_BUFFER = 4  # the upstream connection is still opening and the body buffer is full

# Request headers the router reads or drops (hop-by-hop ones, and Host, framing and Expect: the hop's own).
_H_PIN, _H_ID, _H_TRACE, _H_LENGTH, _H_HOST, _H_CONNECTION, _H_CHUNKED, _H_EXPECT, _H_DROP = range(9)
_SPECIAL_REQUEST_HEADERS = {
    **dict.fromkeys(_HOP, _H_DROP),
    _PIN: _H_PIN,
    b"x-request-id": _H_ID,
    b"traceparent": _H_TRACE,
    b"content-length": _H_LENGTH,
    b"host": _H_HOST,
    b"connection": _H_CONNECTION,
    b"transfer-encoding": _H_CHUNKED,
    b"expect": _H_EXPECT,
}

# What a client connection is doing, for the sweeper's timeouts.
_IDLE, _HEAD, _BODY, _BUSY = range(4)


@dataclass
class RouterConfig:
    """Everything the router needs (the JSON file written by the local supervisor).

    Attributes:
        table: Routing rules.
        upstreams: Base URL per deployment (``http://127.0.0.1:PORT``).
        timeouts_s: Seconds to wait for a deployment's answer (default 10); it enforces its own
            ``request_timeout_ms`` first, so this only catches a hung process.
        max_body_bytes: Largest request body accepted (default 64 MiB, the serving layer's default).
    """

    table: RoutingTable
    upstreams: dict[str, str]
    timeouts_s: dict[str, float] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "table": self.table.to_dict(),
            "upstreams": self.upstreams,
            "timeouts_s": self.timeouts_s,
            "max_body_bytes": self.max_body_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterConfig:
        """Inverse of ``to_dict``.

        Raises:
            ValueError: a routing rule is broken, or a deployment has no upstream URL.
        """
        table = RoutingTable.from_dict(data["table"])
        upstreams = {str(k): str(v) for k, v in data["upstreams"].items()}
        missing = sorted(set(table.deployments) - set(upstreams))
        if missing:
            raise ValueError(f"upstreams: no URL for deployment(s) {', '.join(missing)}")
        return cls(
            table=table,
            upstreams=upstreams,
            timeouts_s={str(k): float(v) for k, v in (data.get("timeouts_s") or {}).items()},
            max_body_bytes=int(data.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
        )

    @classmethod
    def load(cls, path: Path) -> RouterConfig:
        """Read a config file.

        Raises:
            ValueError: the file is not valid JSON or breaks a rule; the message names the file.
        """
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e


def _status_line(status: int) -> bytes:
    return _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status


def _error_response(status: int, message: str, close: bool, fields: bytes = b"") -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [_status_line(status), b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body), fields]
    if close:
        head.append(b"connection: close\r\n")
    head += [b"\r\n", body]
    return b"".join(head)


def _connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def _without_hop_by_hop(fields: bytes) -> bytes:
    """Header lines (CRLF-terminated) minus the hop-by-hop ones and those that ``Connection`` names."""
    headers = []
    tokens: set[bytes] = set()
    for line in fields.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"connection":
                tokens |= _connection_tokens(value)
            headers.append((lname, line))
    return b"".join(line + b"\r\n" for lname, line in headers if lname not in _HOP and lname not in tokens)


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


class _Forward:
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

    def __init__(self, server: RouterServer, pool: UpstreamPool, target: str, head_only: bool) -> None:
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


class _Exchange(_Forward):
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
        client: ClientConnection,
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
            self.client.write(_CONTINUE)
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
            self.client.set_paused(_PAUSE_BUFFER, True)

    def complete(self) -> None:
        """The request is read to its end."""
        self.request_complete = True
        if self.discarding:
            self._maybe_finish()
            return
        if self.chunked_in:
            self.send(b"0\r\n\r\n")
        if self.mirror_body is not None and self.mirror is not None:
            self.server.start_mirror(self, b"".join(self.mirror_body))
            self.mirror_body = None

    def _attach(self, conn: UpstreamConnection, flush: bool) -> None:
        super()._attach(conn, flush)
        if self.client.paused & _PAUSE_BUFFER:
            self.client.set_paused(_PAUSE_BUFFER, False)

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
        fields = self._correlation()
        if not self.request_complete and self.expect_continue:
            # The client waits for a 100 that was not sent before it sends its body: close instead of waiting.
            self.client.write(_error_response(status, message, True, fields))
            self.client.close()
            return
        if not self.request_complete:
            self.discarding = True
        self.client.write(_error_response(status, message, not self.keep_alive, fields))
        self._maybe_finish()

    def _correlation(self) -> bytes:
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
        if self.client.paused & (_PAUSE_UPSTREAM | _PAUSE_BUFFER):
            self.client.set_paused(_PAUSE_UPSTREAM | _PAUSE_BUFFER, False)

    def _maybe_finish(self) -> None:
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
        if _HOP_LINE.search(lower) is not None:
            fields = _without_hop_by_hop(fields)  # rare: most answers have no hop-by-hop header to drop
        self.status = status
        parts = [_status_line(status), fields]
        parts += [_PIN, b": ", self.target.encode(), b"\r\n"]
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
        self._maybe_finish()

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
        self.client.set_paused(_PAUSE_UPSTREAM, paused)


class _MirrorCopy(_Forward):
    """A background copy of a live request; everything about its answer is dropped (but counted)."""

    failed = False
    status = 0

    def __init__(self, server: RouterServer, pool: UpstreamPool, target: str, request: bytes, head_only: bool) -> None:
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


class _HeadRejected(httptools.HttpParserError):
    """Raised from a parser callback when the head passes a limit: parsing stops, the status is answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientConnection(asyncio.Protocol):
    """One client's keep-alive connection: parses requests, answers them in order.

    Args:
        server: The router (config, pools, timeouts).
    """

    def __init__(self, server: RouterServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.queue: deque[_Exchange] = deque()  # queue[0] is being answered; the others wait their turn
        self.parsing: _Exchange | None = None  # the request whose body is arriving
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.phase = _IDLE
        self.now = self.loop.time()
        self.deadline = self.now + server.keepalive_timeout
        self.paused = 0
        self.forwarded_for = b""
        self.head_bytes = 0  # bytes read while the current head is incomplete
        self.lingering = False  # a head was refused: input is dropped until the connection closes
        self.began = 0.0  # perf_counter() when the current request head began
        self.url_bytes = 0

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.forwarded_for = b"x-forwarded-for: " + str(peer[0]).encode() + b"\r\n"
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        self.now = self.loop.time()
        in_head = self.phase == _HEAD
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request was read (Upgrade is hop-by-hop and not forwarded); what follows it is not HTTP.
            if self.queue:
                self.queue[-1].keep_alive = False
            self.set_paused(_PAUSE_PIPELINE, True)
        except _HeadRejected as e:
            self._bad_request(str(e), e.status)
            return
        except httptools.HttpParserError as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, _HeadRejected):  # raised in a callback, wrapped by httptools
                self._bad_request(str(cause), cause.status)
            else:
                self._bad_request(f"invalid HTTP request: {e}")
            return
        if self.phase == _HEAD:
            # The head is still incomplete: httptools holds its bytes; bound them (the timeout bounds its time).
            self.head_bytes = (self.head_bytes if in_head else 0) + len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._bad_request(f"request head is over {MAX_HEAD_BYTES} bytes", 431)
                return
        if self.queue:
            self.queue[0].flush_upstream()

    def eof_received(self) -> bool | None:
        if self.queue:
            # Half-closed after its request: answer it, then close.
            self.queue[-1].keep_alive = False
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        server = self.server
        server.connections.discard(self)
        for exchange in self.queue:
            exchange.client_gone()
            server.count(exchange)
        if self.parsing is not None and self.parsing not in self.queue:
            self.parsing.client_gone()
            server.count(self.parsing)
        self.queue.clear()
        self.parsing = None

    def pause_writing(self) -> None:
        if self.queue and self.queue[0].upstream is not None:
            self.queue[0].upstream.pause_reading(True)

    def resume_writing(self) -> None:
        if self.queue and self.queue[0].upstream is not None:
            self.queue[0].upstream.pause_reading(False)

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.url_bytes = 0
        self.headers = []
        self.phase = _HEAD
        self.began = time.perf_counter()
        self.deadline = self.now + self.server.header_timeout
        if self.queue:
            self.set_paused(_PAUSE_PIPELINE, True)  # answer in order: read on once the earlier ones are done

    def on_url(self, url: bytes) -> None:
        self.url_bytes += len(url)
        if self.url_bytes > MAX_REQUEST_LINE:
            raise _HeadRejected(414, f"request target is over {MAX_REQUEST_LINE} bytes")
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADER_FIELDS:
            raise _HeadRejected(431, f"more than {MAX_HEADER_FIELDS} header fields")
        if len(name) + len(value) > MAX_HEADER_FIELD_BYTES:
            shown = name[:40].decode("latin-1")
            raise _HeadRejected(431, f"header field {shown!r} is over {MAX_HEADER_FIELD_BYTES} bytes")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.server.route(self)
        self.parsing = exchange
        self.phase = _BODY
        self.deadline = self.now + self.server.body_timeout
        self.queue.append(exchange)
        if len(self.queue) == 1:
            exchange.activate(flush=False)  # written after this read is parsed: head and body in one write

    def on_body(self, body: bytes) -> None:
        self.deadline = self.now + self.server.body_timeout
        if self.parsing is not None:
            self.parsing.body(body)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        self.phase = _BUSY
        if exchange is not None:
            exchange.complete()
            exchange._maybe_finish()

    # --- used by the exchanges and the sweeper
    def write(self, data: bytes) -> None:
        """Send bytes to the client (dropped once the connection is closed)."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """Close after what is written went out (idempotent)."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def set_paused(self, reason: int, paused: bool) -> None:
        """Stop or resume reading the client for one reason; reading resumes when no reason is left."""
        before = self.paused
        self.paused = before | reason if paused else before & ~reason
        if self.transport is None or self.closed or bool(before) == bool(self.paused):
            return
        if self.paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def exchange_finished(self, exchange: _Exchange) -> None:
        """Both the request and its answer are through: the next request, idle keep-alive, or close."""
        if not self.queue or self.queue[0] is not exchange:
            return
        self.queue.popleft()
        self.server.count(exchange)
        if not exchange.keep_alive:
            self.close()
            return
        if self.paused & _PAUSE_PIPELINE:
            self.set_paused(_PAUSE_PIPELINE, False)
        if self.queue:
            self.queue[0].activate(flush=True)
        elif self.parsing is None and self.phase == _BUSY:
            self.phase = _IDLE
            self.deadline = self.loop.time() + self.server.keepalive_timeout

    def check(self, now: float) -> None:
        """Sweeper: enforce the client-side timeouts and the active request's upstream silence timeout."""
        if self.closed or self.lingering:
            return
        if self.queue:
            active = self.queue[0]
            conn = active.upstream
            if conn is not None and conn.waiting and now - conn.last_activity > active.timeout:
                conn.timed_out(active.timeout)
        if self.phase == _BUSY or self.paused or now <= self.deadline:
            return
        if self.phase == _IDLE:
            self.close()
            return
        if self.phase == _HEAD:
            message = f"request head not received within {self.server.header_timeout:g} s"
        else:
            message = f"request body not received: nothing for {self.server.body_timeout:g} s"
        exchange = self.queue[0] if self.queue else None
        if exchange is None or (exchange is self.parsing and not exchange.response_started):
            fields = b""
            if exchange is not None:
                exchange.drop_upstream()
                exchange.response_started = True
                exchange.status = 408
                fields = exchange._correlation()
            else:
                self.server.count_unrouted(408, self.began)
            self.write(_error_response(408, message, True, fields))
        self.close()

    def _bad_request(self, message: str, status: int = 400) -> None:
        exchange = self.queue[0] if self.queue else None
        if exchange is not None:
            exchange.drop_upstream()
        if exchange is None or not exchange.response_started:
            if exchange is None:
                self.server.count_unrouted(status, self.began if self.phase == _HEAD else None)
            else:
                exchange.status = status
            self.write(_error_response(status, message, True))
        transport = self.transport
        if status != 400 and transport is not None and not self.closed and transport.can_write_eof():
            # A refused (over-limit) head: the answer, then our end of the stream; what the client still sends is
            # dropped for a second before closing, so that the close does not reset the connection under the answer.
            self.lingering = True
            transport.write_eof()
            self.loop.call_later(1.0, self.close)
            return
        self.close()


class RouterServer:
    """The router: listening socket, routing state, upstream pools, the sweeper.

    Args:
        config: Initial routing config.
        config_path: File re-read on ``SIGHUP`` (default ``None``: no reloading).
        keepalive_timeout: Seconds an idle client connection stays open (default 65).
        header_timeout: Seconds a client has to send a whole request head (default 10).
        body_timeout: Seconds a request body may pause (default 30).

    Attributes:
        metrics: Counts of requests and mirror copies (served by ``serve_metrics``).
    """

    def __init__(
        self,
        config: RouterConfig,
        config_path: Path | None = None,
        *,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
        tracing: RouterTracing | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.tracing = tracing
        self.config = config
        self.config_path = config_path
        self.router = Router(config.table)
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.connections: set[ClientConnection] = set()
        self.mirrors: set[_MirrorCopy] = set()
        self.metrics = RouterMetrics(mirror_in_flight=lambda: len(self.mirrors))
        self._metrics_server: Any = None
        self._pools: dict[str, UpstreamPool] = {}
        self._mirror_pools: dict[str, UpstreamPool] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        # Generated request ids: UUID-shaped, a random version-4 prefix per process and a counter, unique
        # without costing a uuid4() (about 10 us here) per request. They are ids, not secrets.
        self._id_prefix = str(uuid.uuid4())[:24].encode()
        self._ids = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` and start the sweeper.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await self.loop.create_server(lambda: ClientConnection(self), host, port, backlog=1024)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def serve_metrics(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` (its own thread; see ``endpoints.local.router_metrics``).

        Raises:
            OSError: the address cannot be bound.
        """
        self._metrics_server = self.metrics.serve(host, port)

    def count(self, exchange: _Exchange) -> None:
        """Count a request once, when it is over (answered, or the client left: 499 if no answer began)."""
        if not exchange.counted:
            exchange.counted = True
            status = exchange.status or 499
            self.metrics.observe(exchange.target, status, exchange.routed_by, time.perf_counter() - exchange.arrived)
            if exchange.span is not None and self.tracing is not None:
                self.tracing.end(exchange.span, status, exchange.request_id)
                exchange.span = None

    def count_unrouted(self, status: int, began: float | None) -> None:
        """Count a request the router answered before its head was whole (bad, too large or too slow); ``began``:
        when its head began (None: it did not even begin as HTTP, duration 0)."""
        self.metrics.observe("", status, "none", 0.0 if began is None else time.perf_counter() - began)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, let requests in progress finish within ``grace_s`` seconds, then close everything."""
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + grace_s
        while self.loop.time() < deadline:
            for conn in list(self.connections):
                if not conn.queue and conn.parsing is None:
                    conn.close()
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for mirror in list(self.mirrors):
            mirror.drop_upstream()
            mirror.end_span()
        self.mirrors.clear()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # export the spans still batched
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.shutdown)
            self._metrics_server.server_close()
        for pools in (self._pools, self._mirror_pools):
            for pool in pools.values():
                pool.close()
            pools.clear()
        await asyncio.sleep(0)  # let the transports report their close

    def reload(self) -> None:
        """Re-read the config file; on a bad file keep the current rules and log why."""
        if self.config_path is None:
            return
        try:
            config = RouterConfig.load(self.config_path)
        except ValueError as e:
            logger.error("routing config not reloaded, keeping the current one: %s", e)
            return
        self.config = config
        self.router = Router(config.table)
        for pools in (self._pools, self._mirror_pools):
            for name in list(pools):
                if _origin(config.upstreams.get(name, "")) != (pools[name].host, pools[name].port):
                    pools.pop(name).close()  # requests in flight keep their connections to the end
        logger.info("routing config reloaded: traffic %s, mirror %s", config.table.traffic, config.table.mirror_traffic)

    def pool(self, name: str, *, mirror: bool = False) -> UpstreamPool:
        """The connection pool of one deployment (mirror copies have their own)."""
        pools = self._mirror_pools if mirror else self._pools
        pool = pools.get(name)
        if pool is None:
            host, port = _origin(self.config.upstreams[name])
            pool = pools[name] = UpstreamPool(host, port, max_idle=MIRROR_CONCURRENCY if mirror else 64)
        return pool

    def route(self, client: ClientConnection) -> _Exchange:
        """Turn a parsed request head into an exchange: the routing decision, the upstream request head."""
        parser = client.parser
        method = parser.get_method()
        keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        pin = request_id = traceparent = length = host = None
        chunked = expect = False
        tokens: set[bytes] | None = None
        kept: list[bytes] = []
        special = _SPECIAL_REQUEST_HEADERS
        tracing = self.tracing
        for name, value in client.headers:
            lname = name.lower()
            kind = special.get(lname)
            if kind is None:
                kept += [name, b": ", value, b"\r\n"]
            elif kind == _H_PIN:
                pin = value.decode("latin-1").strip() or None
                kept += [name, b": ", value, b"\r\n"]
            elif kind == _H_ID:
                request_id = value
                kept += [name, b": ", value, b"\r\n"]
            elif kind == _H_TRACE:
                traceparent = value
                if tracing is None:  # else the router's own span's traceparent is sent instead
                    kept += [name, b": ", value, b"\r\n"]
            elif kind == _H_LENGTH:
                length = value
            elif kind == _H_HOST:
                host = value
            elif kind == _H_CONNECTION:
                tokens = _connection_tokens(value)
            elif kind == _H_CHUNKED:
                chunked = True  # llhttp accepts Transfer-Encoding in a request only with chunked last
            elif kind == _H_EXPECT:
                expect = value.lower() == b"100-continue"  # the hop's own business: the router answers it
        if tokens:
            # Fields named by Connection are hop-by-hop too (rare: filter once more).
            kept = []
            passed = (None, _H_PIN, _H_ID) if tracing is not None else (None, _H_PIN, _H_ID, _H_TRACE)
            for name, value in client.headers:
                lname = name.lower()
                kind = special.get(lname)
                if lname not in tokens and kind in passed:
                    kept += [name, b": ", value, b"\r\n"]

        decision = self.router.decide(pin)
        config = self.config
        target = decision.target
        if target is None:
            exchange = _Exchange(client, None, None, method, keep_alive, parser.get_http_version() == "1.1")
            exchange.error = (decision.status, decision.error or "not found")
            exchange.arrived = client.began
            exchange.request_id = request_id
            exchange.traceparent = traceparent
            if pin:
                exchange.routed_by = "pin"
            return exchange
        pool = self.pool(target)
        exchange = _Exchange(client, pool, target, method, keep_alive, parser.get_http_version() == "1.1")
        exchange.arrived = client.began
        exchange.traceparent = traceparent
        if pin:
            exchange.routed_by = "pin"
        exchange.timeout = config.timeouts_s.get(target, DEFAULT_TIMEOUT_S)
        exchange.expect_continue = expect
        declared = int(length) if length is not None else None  # llhttp has checked that it is digits
        if declared is not None and declared > config.max_body_bytes:
            exchange.error = (413, f"request body is larger than {config.max_body_bytes} bytes")
            exchange.discarding = True
            exchange.request_id = request_id
            return exchange

        if request_id is None:
            request_id = self.new_request_id()
            kept += [b"x-request-id: ", request_id, b"\r\n"]
        exchange.request_id = request_id
        kept.append(client.forwarded_for)
        if host is not None:
            kept += [b"x-forwarded-host: ", host, b"\r\n"]
        kept.append(b"x-forwarded-proto: http\r\n")
        fields = b"".join(kept)
        own = b""
        if tracing is not None:
            exchange.span, span_traceparent = tracing.start(method, target, exchange.routed_by, traceparent)
            own = b"traceparent: %s\r\n" % span_traceparent
        url = client.url
        if declared is not None:
            framing = b"content-length: %d\r\n" % declared
        elif chunked:
            framing = b"transfer-encoding: chunked\r\n"
            exchange.chunked_in = True
        elif method in _NO_BODY_METHODS:
            framing = b""
        else:
            framing = b"content-length: 0\r\n"
        exchange.send(
            b"%s %s HTTP/1.1\r\nhost: %s\r\n%s%s%s\r\n" % (method, url, pool.host_header, fields, own, framing)
        )
        mirror = decision.mirror
        if mirror is not None and mirror in config.upstreams:
            exchange.mirror = mirror
            exchange.mirror_body = []
            # Copies are marked (x-endpoints-mirror) so that the deployment's logs and traces can tell them apart;
            # traceparent and x-request-id pass unchanged: the copy belongs to the same trace and request.
            exchange.mirror_start = b"%s %s HTTP/1.1\r\n%sx-endpoints-mirror: 1\r\n" % (method, url, fields)
        return exchange

    def new_request_id(self) -> bytes:
        """A generated request id (UUID-shaped: this process's random prefix and a counter)."""
        self._ids += 1
        return b"%s%012x" % (self._id_prefix, self._ids)

    def start_mirror(self, live: _Exchange, body: bytes) -> None:
        """Send a copy of ``live`` in the background; dropped when ``MIRROR_CONCURRENCY`` copies are in flight."""
        name, start, method = live.mirror or "", live.mirror_start, live.method
        if len(self.mirrors) >= MIRROR_CONCURRENCY:
            # Mirror saturated (slow or hung): drop this copy rather than hold memory or slow anyone.
            RouterMetrics.bump(self.metrics.mirror_dropped, name)
            return
        pool = self.pool(name, mirror=True)
        framing = b"content-length: %d\r\n" % len(body) if body or method not in _NO_BODY_METHODS else b""
        span = None
        if self.tracing is not None and live.span is not None:
            span, span_traceparent = self.tracing.start_mirror(live.span, method, name)
            start += b"traceparent: %s\r\n" % span_traceparent
        request = b"".join([start, b"host: ", pool.host_header, b"\r\n", framing, b"\r\n", body])
        copy = _MirrorCopy(self, pool, name, request, method == b"HEAD")
        copy.request_id, copy.traceparent, copy.span = live.request_id, live.traceparent, span
        self.mirrors.add(copy)
        RouterMetrics.bump(self.metrics.mirror_sent, name)
        copy.acquire()

    def _sweep(self) -> None:
        now = self.loop.time()
        try:
            for conn in list(self.connections):
                conn.check(now)
            for mirror in list(self.mirrors):
                up = mirror.upstream
                if up is not None and up.waiting and now - up.last_activity > mirror.timeout:
                    up.timed_out(mirror.timeout)
        except Exception:  # a bug here must not stop every timeout for good
            logger.exception("timeout sweep failed")
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m endpoints.local.router``."""
    parser = argparse.ArgumentParser(prog="python -m endpoints.local.router", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="routing config JSON (reloaded on SIGHUP)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port")
    add = parser.add_argument
    add("--keepalive-timeout", type=float, default=DEFAULT_KEEPALIVE_TIMEOUT_S, help="idle seconds (default 65)")
    add("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_S, help="seconds per request head (default 10)")
    add("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S, help="seconds a body may pause (default 30)")
    add("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port (default: none)")
    return parser


async def _serve(config: RouterConfig, args: argparse.Namespace) -> int:
    server = RouterServer(
        config,
        args.config,
        keepalive_timeout=args.keepalive_timeout,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        tracing=router_tracing_from_env(config.table.endpoint),
    )
    # Metrics first: once the endpoint's port accepts connections (what `local up` waits for), both answer.
    port = args.metrics_port
    try:
        if port is not None:
            server.serve_metrics(args.host, port)
        port = args.port
        await server.start(args.host, port)
    except OSError as e:
        logger.error("cannot listen on %s:%d: %s", args.host, port, e.strerror or e)
        await server.stop(grace_s=0)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    await stop.wait()
    await server.stop(grace_s=5.0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until SIGINT/SIGTERM; exit 2 on a bad config file, 1 when the port cannot be bound."""
    args = build_parser().parse_args(argv)
    handler = logformat.configure(logging.INFO)
    try:
        config = RouterConfig.load(args.config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    handler.setFormatter(logformat.JsonFormatter(endpoint=config.table.endpoint))
    try:
        import uvloop  # about a third less CPU per request than the default loop here
    except ImportError:
        return asyncio.run(_serve(config, args))
    return uvloop.run(_serve(config, args))


if __name__ == "__main__":
    sys.exit(main())
