"""Streaming request-body limit with gzip/deflate decoding.

The limit applies to the decoded body, counted as it streams, so a small compressed body that expands past
it (a "zip bomb") is rejected after at most ``limit + 1`` decoded bytes: memory never grows with the
rejected body.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]

SUPPORTED_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")
# Decoded bytes produced per step: bounds the memory one step can allocate.
_STEP = 256 * 1024


class BodyTooLarge(Exception):
    """The (decoded) body passed the limit."""


class BadEncoding(Exception):
    """The body is not valid for its Content-Encoding."""


class LimitedBody:
    """Wraps ``receive``: counts (and decodes) body bytes, raising past the limit.

    Args:
        receive: The server's ``receive``.
        limit: Largest decoded body in bytes.
        encoding: ``identity``, ``gzip``/``x-gzip`` or ``deflate`` (zlib stream; raw deflate also accepted).
    """

    def __init__(self, receive: Receive, limit: int, encoding: str = "identity") -> None:
        """See the class docstring."""
        self.receive = receive
        self.limit = limit
        self.total = 0
        self.encoding = encoding
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
        self._tail = b""
        self._input_ended = False
        self._done = False
        self._raw_seen = False
        self._raw_total = 0

    async def __call__(self) -> Message:
        """The next ``http.request`` message with decoded bytes, or what the server sent otherwise."""
        if self._decoder is None:
            message = await self.receive()
            if message["type"] == "http.request":
                self.total += len(message.get("body", b""))
                if self.total > self.limit:
                    raise BodyTooLarge
            return message
        return await self._decoded()

    async def _decoded(self) -> Message:
        if self._done:
            return await self.receive()
        if self._tail:
            data = self._inflate(self._tail)
        else:
            message = await self.receive()
            if message["type"] != "http.request":
                return message
            raw = message.get("body", b"")
            self._input_ended = not message.get("more_body", False)
            if raw:
                self._raw_total += len(raw)
                # Compressed input larger than the decoded limit allows (gzip adds < 1 % to random data).
                if self._raw_total > self.limit + self.limit // 64 + 1024:
                    raise BodyTooLarge
                data = self._inflate(raw)
                self._raw_seen = True
            else:
                data = b""
        if self._tail or not self._input_ended:
            return {"type": "http.request", "body": data, "more_body": True}
        self._done = True
        return {"type": "http.request", "body": data + self._finish(), "more_body": False}

    def _inflate(self, raw: bytes) -> bytes:
        try:
            data = self._decoder.decompress(raw, min(_STEP, self.limit - self.total + 1))
        except zlib.error as e:
            if self.encoding == "deflate" and self.total == 0 and not self._raw_seen:
                # Many clients send raw deflate (no zlib header) under "deflate": retry once that way.
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                self.encoding = "deflate-raw"
                return self._inflate(raw)
            raise BadEncoding(f"request body is not valid {self.encoding} data") from e
        self._tail = self._decoder.unconsumed_tail
        if self._decoder.eof and self._decoder.unused_data:
            if not self.encoding.endswith("gzip"):
                raise BadEncoding(f"request body has data after the end of the {self.encoding} stream")
            # A gzip body may hold several members (RFC 1952 section 2.2): decode the next one the same way.
            self._tail = self._decoder.unused_data + self._tail
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._count(len(data))
        return data

    def _finish(self) -> bytes:
        if not self._raw_seen:
            return b""
        data = self._decoder.flush()
        self._count(len(data))
        if not self._decoder.eof:
            raise BadEncoding(f"request body is truncated {self.encoding} data")
        return data

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self.limit:
            raise BodyTooLarge
