"""Payload logging (Azure's ``data_collector``): request and response bodies as JSON lines, off the request path.

The request path does three cheap things for a scored request: decide whether it is sampled (a hash of its request
id, so the choice is the same on every replica and can be recomputed from the id), keep references to the body it
already holds and to the response chunks, and put one record on a bounded queue (``put_nowait``). A daemon thread
drains the queue, encodes the lines and appends them to files; when the queue is full (``queue_records`` records or
``queue_bytes`` payload bytes) the record is dropped and counted (``endpoints_data_collector_dropped_total``), so a
slow or broken store never slows a request down.

Layout, under ``ENDPOINTS_DATA_COLLECTOR_PATH`` (a folder or any fsspec URL)::

    <collection>/<yyyy>/<MM>/<dd>/<HH>/<mm>/<host>-<pid>.jsonl   (rolling_rate minute; hour stops at HH, ...)

A local folder is appended to; on an object store (no append) each batch the thread writes is its own object,
``<host>-<pid>-<seq>.jsonl``. One line per record, in the shape of Azure's model data collector (CloudEvents
fields) plus this platform's: ``specversion``, ``id``, ``source``, ``type`` (``azureml.inference.<collection>``),
``time``, ``datacontenttype``, ``data`` (the JSON payload as JSON; other payloads as text, or base64 with
``dataencoding: base64``), ``correlationid`` and ``xrequestid`` (the request id the answer carries in
``x-request-id``), ``clientrequestid`` (``x-ms-client-request-id``, when sent), ``traceid`` (from ``traceparent``),
``endpoint``, ``deployment``, ``method``, ``path``; inputs add ``headers`` (the ``capture_headers`` asked for, never
credentials); outputs add ``status``.

Sampling: a request is collected when ``int.from_bytes(blake2b(request_id, digest_size=8), "big") <
sampling_rate * 2**64`` (request id as UTF-8).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from contract.serving import INPUT_COLLECTIONS, SECRET_HEADERS, DataCollectorSettings

log = logging.getLogger("serving.collector")

_ROLL_FORMATS = {
    "minute": "%Y/%m/%d/%H/%M",
    "hour": "%Y/%m/%d/%H",
    "day": "%Y/%m/%d",
    "month": "%Y/%m",
    "year": "%Y",
}
# Lines written per batch at most (one file operation per collection and period per batch).
_BATCH = 512
# How long closing waits for the queue to be written (shutdown is bounded; what is left is counted as dropped).
CLOSE_TIMEOUT_S = 5.0
_FULL = 2**64


def sample_threshold(rate: float) -> int:
    """The hash value below which a request is sampled (see the module docstring)."""
    return min(_FULL, int(rate * _FULL))


def sampled(request_id: str, threshold: int) -> bool:
    """Whether the request with this id is collected, for :func:`sample_threshold`'s ``threshold``."""
    if threshold >= _FULL:
        return True
    if threshold <= 0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < threshold


@dataclass(slots=True)
class _Record:
    """One request's payloads, as the request path hands them over (encoded by the writer thread)."""

    when: float
    request_id: str
    client_request_id: str | None
    trace_id: str | None
    method: str
    path: str
    headers: dict[str, str]
    request: bytes
    request_type: str
    response: list[bytes]
    response_type: str
    status: int
    size: int


class DataCollector:
    """The queue and writer thread of one serving process (one per worker).

    Args:
        settings: The deployment's ``DataCollectorSettings``.
        endpoint: Endpoint name written in each line.
        deployment: Deployment name written in each line.
        on_written: Called by the writer thread with (collection, lines written) (default: nothing).
        on_dropped: Called with (reason, records) when records are dropped: ``queue_full`` (on the request path),
            ``write_error`` (writer thread) or ``shutdown`` (default: nothing).
    """

    def __init__(
        self,
        settings: DataCollectorSettings,
        endpoint: str | None,
        deployment: str | None,
        on_written: Any = None,
        on_dropped: Any = None,
    ) -> None:
        from fsspec.core import url_to_fs

        self.settings = settings
        self.threshold = sample_threshold(settings.data_collector_sampling_rate)
        self.capture = frozenset(settings.capture_headers) - SECRET_HEADERS
        self.inputs = tuple(c for c in settings.collections if c in INPUT_COLLECTIONS)
        self.outputs = tuple(c for c in settings.collections if c not in INPUT_COLLECTIONS)
        self.endpoint = endpoint
        self.deployment = deployment
        self._source = f"/endpoints/{endpoint or '-'}/deployments/{deployment or '-'}"
        self._roll = _ROLL_FORMATS[settings.data_collector_rolling_rate]
        self._fs, self._root = url_to_fs(settings.data_collector_path)
        self._append = "file" in _protocols(self._fs)
        self._name = f"{socket.gethostname()}-{os.getpid()}"
        self._seq = 0
        self._queue: queue.SimpleQueue[_Record | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued_records = 0
        self._queued_bytes = 0
        self._max_records = settings.data_collector_queue_records
        self._max_bytes = settings.data_collector_queue_bytes
        self._on_written = on_written or (lambda collection, n: None)
        self._on_dropped = on_dropped or (lambda reason, n: None)
        self._clock_start: float | None = None
        self._clock_step = settings.data_collector_clock_step_ms / 1000
        self._ticks = 0
        if settings.data_collector_clock_start is not None:
            start = datetime.fromisoformat(settings.data_collector_clock_start)
            self._clock_start = (start if start.tzinfo else start.replace(tzinfo=UTC)).timestamp()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="data-collector", daemon=True)
        self._thread.start()

    # -- the request path ---------------------------------------------------------------------------------------

    def wants(self, request_id: str) -> bool:
        """Whether this request is collected (sampling; False once closed)."""
        return not self._closed and sampled(request_id, self.threshold)

    @property
    def max_bytes(self) -> int:
        """Payload bytes the queue holds at most (a request and its answer larger than this are never kept)."""
        return self._max_bytes

    def drop(self, reason: str) -> None:
        """Count a record dropped on the request path without being queued."""
        self._on_dropped(reason, 1)

    def headers_of(self, headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        """The captured headers of a request (names lower-cased; credentials never)."""
        if not self.capture:
            return {}
        out: dict[str, str] = {}
        for name, value in headers:
            key = name.decode("latin-1").lower()
            if key in self.capture:
                out[key] = value.decode("latin-1")
        return out

    def submit(
        self,
        request_id: str,
        method: str,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        request: bytes,
        response: list[bytes],
        response_headers: Iterable[tuple[bytes, bytes]],
        status: int,
        traceparent: bytes | None,
    ) -> None:
        """Queue one scored request's payloads; drop and count it when the queue is full. Never blocks."""
        size = len(request) + sum(len(c) for c in response)
        client_id: str | None = None
        request_type = "application/json"
        for name, value in headers:
            if name == b"x-ms-client-request-id":
                client_id = value.decode("latin-1")
            elif name == b"content-type":
                request_type = value.decode("latin-1")
        response_type = "application/json"
        for name, value in response_headers:
            if name.lower() == b"content-type":
                response_type = value.decode("latin-1")
        with self._lock:
            full = self._queued_records >= self._max_records or self._queued_bytes + size > self._max_bytes
            if not full:
                self._queued_records += 1
                self._queued_bytes += size
                when = self._now()
        if full:
            self._on_dropped("queue_full", 1)
            return
        record = _Record(
            when,
            request_id,
            client_id,
            traceparent[3:35].decode() if traceparent is not None else None,
            method,
            path,
            self.headers_of(headers),
            request,
            request_type,
            response,
            response_type,
            status,
            size,
        )
        self._queue.put_nowait(record)

    def _now(self) -> float:
        if self._clock_start is None:
            return time.time()
        when = self._clock_start + self._ticks * self._clock_step
        self._ticks += 1
        return when

    # -- the writer thread --------------------------------------------------------------------------------------

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop taking records, write what is queued (for at most ``timeout_s``), then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            left = self._queued_records
            log.warning("data collector: %d records not written within %.0f s of shutdown", left, timeout_s)
            self._on_dropped("shutdown", left)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[_Record] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while not stop and len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._write(batch)
            if stop:
                # Records queued after the stop sentinel (a request finishing while closing) are still written.
                rest: list[_Record] = []
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        rest.append(item)
                if rest:
                    self._write(rest)
                return

    def _write(self, batch: list[_Record]) -> None:
        files: dict[tuple[str, str], list[bytes]] = {}
        for record in batch:
            period = datetime.fromtimestamp(record.when, UTC).strftime(self._roll)
            for collection in self.inputs:
                files.setdefault((collection, period), []).append(self._line(record, collection, True))
            for collection in self.outputs:
                files.setdefault((collection, period), []).append(self._line(record, collection, False))
        for (collection, period), lines in files.items():
            folder = f"{self._root}/{collection}/{period}"
            try:
                self._fs.makedirs(folder, exist_ok=True)
                if self._append:
                    with self._fs.open(f"{folder}/{self._name}.jsonl", "ab") as f:
                        f.write(b"".join(lines))
                else:
                    self._seq += 1
                    with self._fs.open(f"{folder}/{self._name}-{self._seq:06d}.jsonl", "wb") as f:
                        f.write(b"".join(lines))
            except Exception as e:  # a broken store must not stop the thread: count, log, go on
                log.error("data collector: writing %d lines to %s failed: %s", len(lines), folder, e)
                self._on_dropped("write_error", len(lines))
                continue
            self._on_written(collection, len(lines))
        with self._lock:
            self._queued_records -= len(batch)
            self._queued_bytes -= sum(r.size for r in batch)

    def _line(self, record: _Record, collection: str, is_input: bool) -> bytes:
        payload = record.request if is_input else b"".join(record.response)
        content_type = record.request_type if is_input else record.response_type
        line: dict[str, Any] = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": self._source,
            "type": f"azureml.inference.{collection}",
            "time": _iso(record.when),
            "datacontenttype": content_type,
        }
        line.update(_data(payload))
        line.update(
            correlationid=record.request_id,
            xrequestid=record.request_id,
            endpoint=self.endpoint,
            deployment=self.deployment,
            method=record.method,
            path=record.path,
        )
        if record.client_request_id is not None:
            line["clientrequestid"] = record.client_request_id
        if record.trace_id is not None:
            line["traceid"] = record.trace_id
        if is_input:
            if record.headers:
                line["headers"] = record.headers
        else:
            line["status"] = record.status
        return orjson.dumps(line) + b"\n"


def _data(payload: bytes) -> dict[str, Any]:
    """The ``data`` of a line: JSON as JSON, other UTF-8 text as a string, anything else in base64."""
    try:
        return {"data": orjson.loads(payload)} if payload else {"data": None}
    except orjson.JSONDecodeError:
        pass
    try:
        return {"data": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data": base64.b64encode(payload).decode(), "dataencoding": "base64"}


def _iso(when: float) -> str:
    moment = datetime.fromtimestamp(when, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def period_of(when: datetime, rolling_rate: str) -> str:
    """The folder (``yyyy/MM/dd/HH`` for hour, ...) a record of time ``when`` is written under."""
    moment = when if when.tzinfo else when.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_ROLL_FORMATS[rolling_rate])
