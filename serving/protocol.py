"""Request-head limits and the head read timeout for uvicorn's httptools protocol.

uvicorn's httptools protocol (llhttp) bounds neither the size of a request head nor the time it takes to arrive:
httptools accumulates a header's name and value until the field ends, so one 32 MiB header costs 32 MiB before any
callback can refuse it, and a connection that sends half a head (or nothing) is kept open forever. The limits are
gunicorn's (``limit_request_line``, ``limit_request_fields``, ``limit_request_field_size``):

* request target (the URL as sent) over :data:`MAX_REQUEST_LINE` bytes -> 414;
* more than :data:`MAX_HEADER_FIELDS` header fields, or one field (name + value) over
  :data:`MAX_HEADER_FIELD_BYTES` bytes -> 431;
* a head still incomplete after :data:`MAX_HEAD_BYTES` bytes (the largest head the limits above allow) -> 431,
  checked after each read, so memory stays within that plus one read (at most 256 KiB with uvloop);
* a head not complete within the header timeout (default 10 s, as the local router) -> 408 and the connection
  closed; a connection that sends no request at all within it is closed.

Each answer is ``{"error": "<message>"}`` with ``Connection: close``. The body's own timeout is the request
deadline of the production layer (``serving.frontend``: 408), which reads a ``/score`` body before admitting it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8190
MAX_HEAD_BYTES = MAX_REQUEST_LINE + 2 + MAX_HEADER_FIELDS * (MAX_HEADER_FIELD_BYTES + 2) + 2
DEFAULT_HEADER_TIMEOUT_S = 10.0
# After refusing a head, what the client still sends is read and dropped for this long before the connection closes:
# closing with unread data would send a reset, which can destroy the answer before the client reads it.
LINGER_S = 1.0

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


def error_response(status: int, message: str) -> bytes:
    """A whole ``{"error": message}`` response that closes the connection."""
    body = orjson.dumps({"error": message})
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        status,
        _REASONS[status],
        len(body),
        body,
    )


def limited_protocol(base: type[Any], header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S) -> type[Any]:
    """A subclass of uvicorn's ``HttpToolsProtocol`` ``base`` enforcing the limits in the module docstring."""
    import httptools

    class HeadRejected(httptools.HttpParserError):
        """Raised from a parser callback: stops parsing; uvicorn then calls send_400_response (answered here)."""

    # The base class's callbacks, called directly: these run for every request (on_header for every field) on the
    # server's hottest path, and a zero-argument super() call costs a lookup each time. The checks themselves are a
    # length test or two; the rare paths (a head split over reads, a refusal) are separate methods.
    base_data_received = base.data_received
    base_on_message_begin = base.on_message_begin
    base_on_header = base.on_header
    base_on_headers_complete = base.on_headers_complete

    class LimitedProtocol(base):
        # All of this class's state lives in one attribute (a _HeadState): uvicorn's protocol already has 28 instance
        # attributes, and CPython 3.11 shares an instance dict's keys (and specializes attribute access on them)
        # only up to 30 keys. Past that every protocol attribute read, uvicorn's included, takes the slow path:
        # six attributes of our own cost about 4 % of a small request's CPU time.
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            head = self._head = _HeadState()
            super().connection_made(transport)
            # A connection must send its first request within the header timeout (later ones: the keep-alive
            # timeout, then the header timeout once their first byte arrives).
            head.timer = self.loop.call_later(header_timeout_s, self._head_late)

        def connection_lost(self, exc: Exception | None) -> None:
            self._head.cancel_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            head = self._head
            if head.lingering:
                return
            base_data_received(self, data)
            if head.in_head:  # a head is still incomplete after this read (rare: most heads come in one read)
                self._head_incomplete(len(data))

        def _head_incomplete(self, size: int) -> None:
            """Bound the bytes httptools holds for a head still incomplete after a read, and its time."""
            if self.transport.is_closing():
                return
            head = self._head
            head.bytes += size
            # llhttp hands on a partial request target at the end of each read: a long one is refused now, as a
            # complete head's is in on_headers_complete.
            if len(self.url) > MAX_REQUEST_LINE:
                self._refuse(414, f"request target is over {MAX_REQUEST_LINE} bytes")
            elif head.bytes > MAX_HEAD_BYTES:
                self._refuse(431, f"request head is over {MAX_HEAD_BYTES} bytes")
            elif head.timer is None:
                head.timer = self.loop.call_later(header_timeout_s, self._head_late)

        def on_message_begin(self) -> None:
            head = self._head
            head.in_head = True
            head.fields = 0
            base_on_message_begin(self)

        def on_header(self, name: bytes, value: bytes) -> None:
            head = self._head
            head.fields += 1
            if head.fields > MAX_HEADER_FIELDS or len(name) + len(value) > MAX_HEADER_FIELD_BYTES:
                self._reject_head(name)
            base_on_header(self, name, value)

        def on_headers_complete(self) -> None:
            head = self._head
            head.in_head = False
            head.bytes = 0
            if head.timer is not None:
                head.cancel_timer()
            if len(self.url) > MAX_REQUEST_LINE:
                self._reject_head(None)
            base_on_headers_complete(self)

        def _reject_head(self, name: bytes | None) -> None:
            """Raise HeadRejected for the first limit the head passes (the request target, then the fields)."""
            head = self._head
            if len(self.url) > MAX_REQUEST_LINE:
                head.reject = (414, f"request target is over {MAX_REQUEST_LINE} bytes")
            elif head.fields > MAX_HEADER_FIELDS:
                head.reject = (431, f"more than {MAX_HEADER_FIELDS} header fields")
            else:
                shown = (name or b"")[:40].decode("latin-1")
                head.reject = (431, f"header field {shown!r} is over {MAX_HEADER_FIELD_BYTES} bytes")
            raise HeadRejected(head.reject[1])

        def send_400_response(self, msg: str) -> None:
            reject = self._head.reject
            if reject is None:
                super().send_400_response(msg)
                return
            self._refuse(*reject)

        def _refuse(self, status: int, message: str) -> None:
            head = self._head
            head.cancel_timer()
            head.in_head = False
            transport = self.transport
            if transport.is_closing() or head.lingering:
                return
            transport.write(error_response(status, message))
            if status == 408 or not transport.can_write_eof():
                transport.close()
                return
            # The answer, then our end of the stream; the rest of the client's head is read and dropped (bounded
            # in time) so that the close does not reset the connection under the answer.
            head.lingering = True
            transport.write_eof()
            self.loop.call_later(LINGER_S, transport.close)

        def _head_late(self) -> None:
            head = self._head
            head.timer = None
            if self.transport.is_closing():
                return
            if head.in_head:
                self._refuse(408, f"request head not received within {header_timeout_s:g} s")
            elif self.cycle is None:  # no request at all on this connection
                self.transport.close()

    return LimitedProtocol


class _HeadState:
    """A connection's head-limit state (see LimitedProtocol: one attribute on the protocol, slots here)."""

    __slots__ = ("bytes", "fields", "in_head", "lingering", "reject", "timer")

    def __init__(self) -> None:
        self.reject: tuple[int, str] | None = None  # the limit a parser callback refused the head for
        self.lingering = False  # refused: what the client still sends is dropped until the close
        self.in_head = False  # a request head has begun and is not complete yet
        self.bytes = 0  # bytes of the earlier reads of the head in progress
        self.fields = 0  # header fields of the head in progress
        self.timer: asyncio.TimerHandle | None = None  # the header timeout

    def cancel_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
