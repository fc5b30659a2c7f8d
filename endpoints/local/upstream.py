"""The router's hop to the serving processes: keep-alive connections as asyncio Protocols + httptools parser.

Why not httpx, nor asyncio streams: measured on the project's 2-vCPU machines, one ``httpx.AsyncClient``
request to a local serving process costs about 1.3 ms of CPU (its anyio/httpcore layers); asyncio streams
with a coroutine per request cost about 0.1 ms more than the bare protocol callbacks used here, which the
router pays on every request. A connection here is an ``asyncio.Protocol`` that feeds the ``httptools``
(llhttp) response parser and hands the answer to a *sink* (the router's exchange) through plain method calls:
no task, no future, no timer per request.

Scope: exactly what the router needs — one origin per pool, plain HTTP/1.1 on loopback, one request at a
time per connection, the response streamed to the sink as it arrives. The silence timeout is checked by
the router's sweeper from ``last_activity`` (one periodic timer for all connections, not one per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

import httptools

IDLE_TIMEOUT_S = 20.0  # below the serving processes' keep-alive (65 s), so they never close a pooled one first


class UpstreamError(Exception):
    """The upstream could not be reached or broke the exchange (the router answers 502)."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time (the router answers 504)."""


class ResponseSink(Protocol):
    """What a connection reports to while it carries one exchange."""

    def response_head(self, status: int, fields: bytes, bodiless: bool) -> bool:
        """The response head (interim 1xx answers are skipped); ``bodiless``: HEAD, 204 or 304, no body follows.

        ``fields`` are the header lines as received, each ending with CRLF, without the status line and the
        empty line: most answers pass through whole, so they are not split into Python objects per header.

        Returns:
            Whether the head frames the body (``Content-Length`` or ``Transfer-Encoding``); if not, the body
            ends with the connection. The sink reads the headers anyway, so it answers this too.
        """

    def response_body(self, data: bytes) -> None:
        """A piece of the response body."""

    def response_flush(self) -> None:
        """End of one read from the socket: write out what was collected."""

    def response_end(self) -> None:
        """The response is complete (the connection is back in the pool or closed already)."""

    def upstream_failed(self, error: UpstreamError, stale: bool) -> None:
        """The exchange broke; ``stale``: a reused connection closed before any byte of the answer."""

    def upstream_paused(self, paused: bool) -> None:
        """Flow control: the upstream socket's write buffer is full (``True``) or drained again."""


class UpstreamConnection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection to a serving process.

    Args:
        pool: The pool it belongs to (it goes back there after a clean exchange).
    """

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.closed = False
        self.reused = False
        self.last_used = time.monotonic()
        self.last_activity = 0.0  # loop time of the last byte received (or of the request's end)
        self.waiting = False  # the request is complete and the answer is not: the silence timeout applies
        self.request_complete = False
        self._head_only = False
        self._received = False
        self._head = b""  # bytes received since the response began, until its head is complete
        self._in_head = False
        self._interim = False
        self._keep_alive = False
        self._until_eof = False
        self._early = False  # the answer began before the whole request was out: the connection is not reused

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:  # an idle connection must stay silent; anything else is a broken peer
            self.close()
            return
        self._received = True
        if self._in_head:
            self._head += data  # no copy for the first read (the common case: the whole head in one read)
        self.last_activity = self.pool.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("upgrade responses are not supported"))
            return
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"invalid response: {e}"))
            return
        if self.sink is not None:
            self.sink.response_flush()

    def eof_received(self) -> bool | None:
        if self.sink is not None and self._until_eof:
            # A response without length or chunks ends where the connection does.
            self._until_eof = False
            self._keep_alive = False
            self.on_message_complete()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.sink is not None:
            if not self._received:
                message = "connection closed before the response head"
            else:
                message = "connection closed before the end of the response"
            self._fail(UpstreamError(message), stale=self.reused and not self._received)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(False)

    # --- httptools callbacks
    # No on_header: httptools then makes no Python call per header; the head is cut from the bytes instead.
    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        head = self._head
        end = head.find(b"\r\n\r\n")  # llhttp has just parsed this head, so it is here and well-formed
        fields = head[head.find(b"\r\n") + 2 : end + 2]
        if status < 200:
            self._interim = True  # 100 Continue and friends: the real answer follows
            self._head = head[end + 4 :]
            return
        self._in_head = False
        self._head = b""
        # An answer that begins while part of the request is still unsent (a 401 before the body, say) leaves the
        # peer's reading of that request unknown: it may drop the rest or read it, so the connection is closed.
        transport = self.transport
        self._early = not self.request_complete or (transport is not None and transport.get_write_buffer_size() > 0)
        # Asked now: once the message is complete the parser resets and always answers False.
        self._keep_alive = self.parser.should_keep_alive()
        bodiless = self._head_only or status in (204, 304)
        if self.sink is not None:
            framed = self.sink.response_head(status, fields, bodiless)
            self._until_eof = not framed and not bodiless
        if self._head_only:
            # HEAD answers announce a body length they do not send: done here, and the connection is not reused.
            self._keep_alive = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        sink, self.sink = self.sink, None
        if sink is None:
            return
        self.waiting = False
        if self._keep_alive and self.request_complete and not self._until_eof and not self._early:
            self.pool.release(self)
        else:
            self.close()
        sink.response_end()

    # --- used by the router
    def start(self, sink: ResponseSink, head_only: bool) -> None:
        """Carry one exchange: its answer goes to ``sink``."""
        self.sink = sink
        self._head_only = head_only
        self._received = False
        self._in_head = True
        self._head = b""
        self._interim = False
        self._until_eof = False
        self._early = False
        self.request_complete = False
        self.waiting = False

    def write(self, data: bytes) -> None:
        """Send bytes of the request."""
        assert self.transport is not None
        self.transport.write(data)

    def finish_request(self) -> None:
        """The request is written whole: the answer's silence timeout starts now."""
        self.request_complete = True
        self.waiting = True
        self.last_activity = self.pool.loop.time()

    def pause_reading(self, paused: bool) -> None:
        """Flow control: stop (``True``) or resume reading the answer (the client socket is full)."""
        if self.transport is not None and not self.closed:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def abandon(self) -> None:
        """The exchange is over for the router (client gone, error answered): close without telling the sink."""
        self.sink = None
        self.close()

    def timed_out(self, timeout: float) -> None:
        """The sweeper saw no byte for ``timeout`` seconds: fail the exchange (504) and close."""
        self._fail(UpstreamTimeout(f"no answer within {timeout:g} s"))

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.closed = True
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()

    def usable(self) -> bool:
        """Open, idle and not kept past the idle timeout."""
        return not self.closed and time.monotonic() - self.last_used < IDLE_TIMEOUT_S

    def _fail(self, error: UpstreamError, stale: bool = False) -> None:
        sink, self.sink = self.sink, None
        self.waiting = False
        self.close()
        if sink is not None:
            sink.upstream_failed(error, stale)


class UpstreamPool:
    """Keep-alive connections to one ``host:port``.

    Args:
        host: Upstream host (a loopback address in local mode).
        port: Upstream port.
        max_idle: Idle connections kept (default 64).
        connect_timeout: Seconds to open a connection (default 2).
    """

    def __init__(self, host: str, port: int, max_idle: int = 64, connect_timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.loop = asyncio.get_running_loop()
        self.host_header = f"{host}:{port}".encode()
        self._idle: list[UpstreamConnection] = []

    def idle(self) -> UpstreamConnection | None:
        """A pooled connection ready for a request, or ``None`` (then ``connect``)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        return None

    async def connect(self) -> UpstreamConnection:
        """Open a new connection.

        Raises:
            UpstreamTimeout: not connected within ``connect_timeout``.
            UpstreamError: refused or unreachable.
        """
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port)
        except TimeoutError as e:
            raise UpstreamTimeout(f"connect to {self.host}:{self.port} timed out") from e
        except OSError as e:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {e.strerror or e}") from e
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Take a connection back after a clean exchange (closed if the pool is full)."""
        if conn.closed or len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn.last_used = time.monotonic()
        self._idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        """Forget a connection the peer closed while it was idle."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    def close(self) -> None:
        """Close every idle connection; those still in use are closed when released."""
        self.max_idle = 0
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
