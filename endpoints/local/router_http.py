"""HTTP/1.1 as the local router speaks it on both sides: head limits, hop-by-hop fields, the request header fields it
reads, status lines and its own JSON error answers. Bytes in, bytes out: no sockets, no state."""

from __future__ import annotations

import http
import json
import re
from urllib.parse import urlsplit

from endpoints.local.routing import PIN_HEADER

# Request-head limits (gunicorn's, as the serving process: serving.protocol): the request target, the number of header
# fields, one field (name + value), and the bytes an incomplete head may hold (checked after each read).
MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8190
MAX_HEAD_BYTES = MAX_REQUEST_LINE + 2 + MAX_HEADER_FIELDS * (MAX_HEADER_FIELD_BYTES + 2) + 2
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
HOP_BY_HOP_FIELDS = frozenset(h.encode() for h in HOP_BY_HOP)
PIN_FIELD = PIN_HEADER.encode()
NO_BODY_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A hop-by-hop field at the start of a line of a lower-cased head (preceded by "\n").
HOP_BY_HOP_LINE = re.compile(rb"\n(?:" + b"|".join(re.escape(h) for h in sorted(HOP_BY_HOP_FIELDS)) + rb")[ \t]*:")

# Request headers the router reads or drops (hop-by-hop ones, and Host, framing and Expect: the hop's own).
H_PIN, H_ID, H_TRACE, H_LENGTH, H_HOST, H_CONNECTION, H_CHUNKED, H_EXPECT, H_DROP = range(9)
SPECIAL_REQUEST_HEADERS = {
    **dict.fromkeys(HOP_BY_HOP_FIELDS, H_DROP),
    PIN_FIELD: H_PIN,
    b"x-request-id": H_ID,
    b"traceparent": H_TRACE,
    b"content-length": H_LENGTH,
    b"host": H_HOST,
    b"connection": H_CONNECTION,
    b"transfer-encoding": H_CHUNKED,
    b"expect": H_EXPECT,
}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>`` and CRLF (reason ``Unknown`` for a code HTTP names none for)."""
    return _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status


def error_response(status: int, message: str, close: bool, fields: bytes = b"") -> bytes:
    """A whole answer of the router's own: ``{"error": message}`` as JSON, ``fields`` (CRLF-terminated header lines)
    added, ``connection: close`` when ``close``."""
    body = json.dumps({"error": message}).encode()
    head = [status_line(status), b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body), fields]
    if close:
        head.append(b"connection: close\r\n")
    head += [b"\r\n", body]
    return b"".join(head)


def connection_tokens(value: bytes) -> set[bytes]:
    """The field names a ``Connection`` header lists (lower case): hop-by-hop too."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def without_hop_by_hop(fields: bytes) -> bytes:
    """Header lines (CRLF-terminated) minus the hop-by-hop ones and those that ``Connection`` names."""
    headers = []
    tokens: set[bytes] = set()
    for line in fields.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"connection":
                tokens |= connection_tokens(value)
            headers.append((lname, line))
    return b"".join(line + b"\r\n" for lname, line in headers if lname not in HOP_BY_HOP_FIELDS and lname not in tokens)


def upstream_origin(url: str) -> tuple[str, int]:
    """Host and port of a deployment's base URL (``http://127.0.0.1:PORT``)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80
