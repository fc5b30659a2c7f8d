"""The scoring script's own output: ``print()`` in ``init()`` and ``run()`` as JSON log lines with the request id.

The serving process replaces ``sys.stdout`` with :class:`UserOutput` before it imports the script. Every complete
line the script prints becomes one JSON object on the process's real standard output, beside the access log::

    {"time": "2026-12-02T04:41:38.123Z", "level": "info", "logger": "user", "endpoint": "shop", "deployment": "blue",
     "request_id": "…", "trace_id": null, "message": "the line"}

(``serving.logformat``'s fields, the one format of every process.)

``request_id`` is the id of the request whose ``run()`` printed the line (the id the response carries in
``x-request-id``), or null for output outside a request (``init()``, background threads). Lines are written as soon
as they are complete, so nothing waits in a block buffer when the container is stopped; text printed without a
newline is written at the next ``flush()`` from that thread (``print(..., flush=True)``), when the same thread goes
on to print for another request, or when the worker stops (:meth:`UserOutput.flush_all`). Writing never raises
into the script: text that JSON cannot carry (lone surrogates from undecodable file names) is escaped. Output
written to ``sys.stdout.buffer`` or to file descriptor 1 directly is not captured and passes through unchanged.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import Any, TextIO

import orjson

from serving.logformat import IsoTime, process_identity
from serving.requestid import current_request_id


class UserOutput(io.TextIOBase):
    """A text stream that writes each complete line as one JSON log object to ``target`` (see the module doc)."""

    line_buffering = True
    mode = "w"
    name = "<stdout>"

    def __init__(self, target: TextIO, logger: str = "user") -> None:
        """Wrap ``target`` (usually the original ``sys.stdout``); ``logger`` names the lines' ``logger`` field."""
        super().__init__()
        self.target = target
        self._iso = IsoTime()
        self._endpoint, self._deployment = process_identity()
        self._logger = logger
        self._lock = threading.Lock()
        # Per thread: the text since its last newline, and the request id it was written under.
        self._pending: dict[int, tuple[str, bytes | None]] = {}

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.target, "errors", None)

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

    def reconfigure(self, **_options: Any) -> None:
        """Accepted and ignored (scripts call ``sys.stdout.reconfigure(...)``): the lines are always UTF-8 JSON."""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        request_id = current_request_id.get()
        thread = threading.get_ident()
        out: list[tuple[str, bytes | None]] = []
        with self._lock:
            pending, pending_id = self._pending.pop(thread, ("", request_id))
            if pending and pending_id != request_id:
                out.append((pending, pending_id))  # an unfinished line of another request keeps its own id
                pending = ""
            if "\n" in text:
                *lines, rest = (pending + text).split("\n")
                out.extend((line, request_id) for line in lines)
            else:
                rest = pending + text
            if rest:
                self._pending[thread] = (rest, request_id)
            if out:
                self._emit(out)
        return len(text)

    def flush(self) -> None:
        """Write this thread's unfinished line, if any."""
        with self._lock:
            pending = self._pending.pop(threading.get_ident(), None)
            if pending is not None:
                self._emit([pending])
            elif not self.closed:
                self._emit([])

    def flush_all(self) -> None:
        """Write every thread's unfinished line (the serving worker calls this when it stops)."""
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
            self._emit(pending)

    def close(self) -> None:
        if not self.closed:
            self.flush_all()
        super().close()

    def _line(self, ts: str, message: str, request_id: bytes | None) -> bytes:
        rid = request_id.decode("latin-1") if request_id is not None else None
        record = {
            "time": ts,
            "level": "info",
            "logger": self._logger,
            "endpoint": self._endpoint,
            "deployment": self._deployment,
            "request_id": rid,
            "trace_id": None,
            "message": message,
        }
        try:
            return orjson.dumps(record) + b"\n"
        except TypeError:  # lone surrogates (undecodable bytes smuggled into str): escape rather than fail
            record["message"] = message.encode("utf-8", "backslashreplace").decode("utf-8")
            return orjson.dumps(record) + b"\n"

    def _emit(self, lines: list[tuple[str, bytes | None]]) -> None:
        """Write ``lines`` (called with the lock held); output errors drop the lines, never fail the script."""
        ts = self._iso()
        data = b"".join(self._line(ts, message, request_id) for message, request_id in lines)
        try:
            self.target.flush()  # text the target holds goes out first (order)
            if not data:
                return
            binary = getattr(self.target, "buffer", None)
            if binary is not None:
                binary.write(data)  # UTF-8 as it is, whatever the target's text encoding
                binary.flush()
            else:
                self.target.write(data.decode("utf-8"))
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
