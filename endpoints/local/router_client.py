"""The client side of the local router: one client's keep-alive connection as an asyncio Protocol.

It parses requests with ``httptools`` (llhttp), bounds their heads (gunicorn's limits), hands each parsed head to
the router (:meth:`Listener.route`) and answers the exchanges in order (pipelining); the router's sweeper calls
:meth:`ClientConnection.check` for the idle keep-alive, head and body timeouts (408) and the deployment's silence.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

import httptools

from endpoints.local.router_exchange import PAUSE_PIPELINE, Exchange, Hub
from endpoints.local.router_http import (
    MAX_HEAD_BYTES,
    MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_LINE,
    error_response,
)

# What a client connection is doing, for the sweeper's timeouts.
_IDLE, _HEAD, _BODY, _BUSY = range(4)


class Listener(Hub, Protocol):
    """What a client connection uses of the router (``endpoints.local.router_server.RouterServer``)."""

    @property
    def connections(self) -> set[ClientConnection]: ...

    @property
    def keepalive_timeout(self) -> float: ...

    @property
    def header_timeout(self) -> float: ...

    @property
    def body_timeout(self) -> float: ...

    def route(self, client: ClientConnection) -> Exchange: ...

    def count(self, exchange: Exchange) -> None: ...

    def count_unrouted(self, status: int, began: float | None) -> None: ...


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

    def __init__(self, server: Listener) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.queue: deque[Exchange] = deque()  # queue[0] is being answered; the others wait their turn
        self.parsing: Exchange | None = None  # the request whose body is arriving
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
            self.set_paused(PAUSE_PIPELINE, True)
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
            self.set_paused(PAUSE_PIPELINE, True)  # answer in order: read on once the earlier ones are done

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
            exchange.maybe_finish()

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

    def exchange_finished(self, exchange: Exchange) -> None:
        """Both the request and its answer are through: the next request, idle keep-alive, or close."""
        if not self.queue or self.queue[0] is not exchange:
            return
        self.queue.popleft()
        self.server.count(exchange)
        if not exchange.keep_alive:
            self.close()
            return
        if self.paused & PAUSE_PIPELINE:
            self.set_paused(PAUSE_PIPELINE, False)
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
                fields = exchange.correlation()
            else:
                self.server.count_unrouted(408, self.began)
            self.write(error_response(408, message, True, fields))
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
            self.write(error_response(status, message, True))
        transport = self.transport
        if status != 400 and transport is not None and not self.closed and transport.can_write_eof():
            # A refused (over-limit) head: the answer, then our end of the stream; what the client still sends is
            # dropped for a second before closing, so that the close does not reset the connection under the answer.
            self.lingering = True
            transport.write_eof()
            self.loop.call_later(1.0, self.close)
            return
        self.close()
