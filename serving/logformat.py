"""One JSON log line format for every process: the scoring server, the router, the job API and the runner.

Every line is one JSON object with, in this order::

    {"time": "2026-12-02T04:41:38.123Z", "level": "info", "logger": "serving.server", "endpoint": "shop",
     "deployment": "blue", "request_id": "...", "trace_id": "...", "message": "..."}

``endpoint`` and ``deployment`` come from the process's environment (``ENDPOINTS_ENDPOINT_NAME``, and
``ENDPOINTS_DEPLOYMENT_NAME`` or Azure's ``SERVICE_VERSION`` where ``SERVICE_NAME`` is set, as the builders and the
local supervisor set them); ``request_id`` and ``trace_id`` from the record (``extra=``) or, for lines logged while
a request is scored, from ``serving.requestid.current_request_id``. Fields without a value are ``null``, so every
line has the same keys. Lines may carry more keys after ``message`` (the access log's method, route, status).

uvicorn's own loggers are routed here too (:func:`uvicorn_log_config`), so no plain-text line is left. This module
imports nothing of the project but ``serving.requestid`` (a leaf), and nothing heavy: the router, the job API and
the runner import it without the serving stack.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

import orjson

from serving.requestid import current_request_id

# W3C Trace Context ``traceparent`` (version 00): version-trace_id-parent_id-flags, lower-case hex; an all-zero trace
# or parent id is invalid. Group 1 is the trace id that log lines carry.
TRACEPARENT = re.compile(rb"00-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
FIELDS = ("time", "level", "logger", "endpoint", "deployment", "request_id", "trace_id", "message")
# Uvicorn's loggers: their records go to the root logger's JSON handler rather than uvicorn's text handlers.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def process_identity(environ: Any = None) -> tuple[str | None, str | None]:
    """``(endpoint, deployment)`` of this process from its environment (``None`` where not set)."""
    env = os.environ if environ is None else environ
    endpoint = env.get("ENDPOINTS_ENDPOINT_NAME") or env.get("SERVICE_NAME") or None
    deployment = env.get("ENDPOINTS_DEPLOYMENT_NAME") or (
        env.get("SERVICE_VERSION") if env.get("SERVICE_NAME") else None
    )
    return endpoint, deployment or None


class IsoTime:
    """ISO 8601 UTC timestamps with milliseconds; the part up to the seconds is made once per second, and the whole
    text once per millisecond (a busy server writes several lines in the same millisecond)."""

    __slots__ = ("_millis", "_prefix", "_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._millis = -1
        self._text = ""

    def __call__(self, epoch: float | None = None) -> str:
        now = time.time() if epoch is None else epoch
        second = int(now)
        millis = int((now - second) * 1000)
        if millis == self._millis and second == self._second:
            return self._text
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._millis = millis
        self._text = text = f"{self._prefix}.{millis:03d}Z"
        return text


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with :data:`FIELDS` (then ``exception`` when there is one).

    Args:
        endpoint: Endpoint name for every line (default: from the environment).
        deployment: Deployment name for every line (default: from the environment).
        fields: More keys for every line, after ``message`` (the batch runner's ``instance``).
    """

    def __init__(
        self, endpoint: str | None = None, deployment: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.fields = dict(fields or {})
        env_endpoint, env_deployment = process_identity()
        self.endpoint = endpoint or env_endpoint
        self.deployment = deployment or env_deployment
        self.iso = IsoTime()

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            current = current_request_id.get()
            request_id = current.decode("latin-1") if current else None
        line: dict[str, Any] = {
            "time": self.iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "endpoint": getattr(record, "endpoint", None) or self.endpoint,
            "deployment": getattr(record, "deployment", None) or self.deployment,
            "request_id": request_id,
            "trace_id": getattr(record, "trace_id", None),
            "message": record.getMessage(),
        }
        if self.fields:
            line.update(self.fields)
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(
    level: str | int = "INFO", *, stream: Any = None, fields: dict[str, Any] | None = None
) -> logging.Handler:
    """Send every log record of this process to ``stream`` (default stderr) as JSON lines.

    Replaces the root logger's handlers; uvicorn's loggers lose their own handlers and propagate to the root.

    Returns:
        The handler installed.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(fields=fields))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``: its loggers in the JSON format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


class QuietPaths(logging.Filter):
    """Drops uvicorn access lines for health routes (readiness polls) unless the logger logs at debug.

    Args:
        paths: Request paths whose access lines are dropped at info (default ``/ready``, ``/health``, ``/``).
    """

    def __init__(self, paths: tuple[str, ...] = ("/ready", "/health", "/healthz", "/")) -> None:
        super().__init__()
        self.paths = frozenset(paths)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access records: (client, method, path, http_version, status)
        if isinstance(args, tuple) and len(args) == 5 and str(args[2]).split("?", 1)[0] in self.paths:
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True
