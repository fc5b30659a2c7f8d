"""The serving process's transport: listening sockets, uvicorn's HTTP protocol with ``TCP_NODELAY`` and the head
limits of ``serving.protocol``, a transport that joins a response's head and body, and the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any


def bind_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and listening unless ``listen`` is False)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def protocol_class(header_timeout_s: float = 10.0) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (h11 where httptools is missing) setting ``TCP_NODELAY`` per connection.

    The httptools protocol also gets the request-head limits and the header timeout of ``serving.protocol``
    (h11 bounds the head by ``h11_max_incomplete_event_size`` instead).
    """
    base: type[asyncio.Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        from serving.protocol import limited_protocol

        base = limited_protocol(HttpToolsProtocol, header_timeout_s)
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol

    class NoDelayProtocol(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(JoiningTransport(transport))

    return NoDelayProtocol


class JoiningTransport:
    """A transport that sends a response's head and body in one system call instead of two.

    uvicorn writes the status line and headers on ``http.response.start`` and the body on ``http.response.body``;
    with ``TCP_NODELAY`` each write is its own send and its own segment, and over loopback or a pod network the
    send is a large part of a small response's cost. A small write is held until the next write on the connection
    (sent joined with it, at once) or the end of the current pass of the event loop, whichever comes first, so
    nothing waits longer than that pass. Writes over ``HOLD_MAX`` bytes go straight out (after what is held), so
    flow control sees every large body as before. Everything else is the real transport's.
    """

    HOLD_MAX = 16384

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        """Wrap ``transport`` (on the running loop)."""
        self._transport: Any = transport
        self._loop = asyncio.get_running_loop()
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        """Send ``data``, or hold it (small, nothing held yet) until the next write or the end of this loop pass."""
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= self.HOLD_MAX:
                self._transport.write(held + data)
            else:  # not worth copying a large body to save one call
                self._transport.write(held)
                self._transport.write(data)
        elif len(data) <= self.HOLD_MAX and not self._transport.is_closing():
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        """Send every chunk (joined)."""
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        """Send what is held, then EOF."""
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Send what is held, then close."""
        self._flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        """Bytes buffered, held ones included."""
        return int(self._transport.get_write_buffer_size()) + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def max_head_bytes() -> int:
    """The largest request head ``serving.protocol`` lets through (h11's bound where httptools is missing)."""
    from serving.protocol import MAX_HEAD_BYTES

    return MAX_HEAD_BYTES


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop (asyncio's where uvloop is missing)."""
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.new_event_loop
