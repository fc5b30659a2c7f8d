"""The scoring script's own output: ``print()`` in ``init()`` and ``run()`` as JSON log lines with the request id.

The serving process replaces ``sys.stdout`` with :class:`UserOutput` before it imports the script. Every complete
line the script prints becomes one JSON object on the process's real standard output, beside the access log::

    {"ts": 1795447594.235141, "level": "info", "logger": "user", "request_id": "…", "message": "the line"}

``request_id`` is the id of the request whose ``run()`` printed the line (the id the response carries in
``x-request-id``), or null for output outside a request (``init()``, background threads). Lines are written as soon
as they are complete, so nothing waits in a block buffer when the container is stopped; text printed without a
newline is written at the next ``flush()`` (``print(..., flush=True)``, or at exit). Output written to
``sys.stdout.buffer`` or to file descriptor 1 directly is not captured and passes through unchanged.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from typing import Any, TextIO

import orjson

from serving.requestid import current_request_id


class UserOutput(io.TextIOBase):
    """A text stream that writes each complete line as one JSON log object to ``target`` (see the module doc)."""

    def __init__(self, target: TextIO, logger: str = "user") -> None:
        """Wrap ``target`` (usually the original ``sys.stdout``); ``logger`` names the lines' ``logger`` field."""
        super().__init__()
        self.target = target
        self._logger = logger
        self._lock = threading.Lock()
        self._pending = threading.local()  # each thread's text since its last newline

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    @property
    def buffer(self) -> Any:
        """The target's binary buffer: bytes written there pass through uncaptured."""
        return self.target.buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if "\n" not in text:
            self._pending.text = getattr(self._pending, "text", "") + text
            return len(text)
        *lines, rest = (getattr(self._pending, "text", "") + text).split("\n")
        self._pending.text = rest
        self._emit(lines)
        return len(text)

    def flush(self) -> None:
        pending = getattr(self._pending, "text", "")
        if pending:
            self._pending.text = ""
            self._emit([pending])
        elif not self.closed:
            self.target.flush()

    def _emit(self, lines: list[str]) -> None:
        request_id = current_request_id.get()
        rid = request_id.decode("latin-1") if request_id is not None else None
        ts = round(time.time(), 6)
        out = b"".join(
            orjson.dumps({"ts": ts, "level": "info", "logger": self._logger, "request_id": rid, "message": line})
            + b"\n"
            for line in lines
        )
        with self._lock:
            try:
                self.target.write(out.decode())
                self.target.flush()
            except (OSError, ValueError):
                pass  # the real stdout is closed or gone: the script's output is dropped, the request goes on


def capture_user_output() -> UserOutput:
    """Replace ``sys.stdout`` with a :class:`UserOutput` over it (once; returns the one in place)."""
    if isinstance(sys.stdout, UserOutput):
        return sys.stdout
    captured = UserOutput(sys.stdout)
    sys.stdout = captured
    return captured
