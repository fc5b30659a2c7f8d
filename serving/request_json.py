"""A ``/score`` request as the entry script sees it, and ``run()``'s result as JSON.

Parsing follows azureml-inference-server-http 1.5 (``azmlinfsrv``): query-string values as JSON where they parse,
the body as the JSON object inference-schema scripts expect, with azmlinfsrv's 400/415 messages. Results are
serialised with orjson (numpy and pandas values as lists and numbers).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson

from serving.errors import BadInput, RunError, UnsupportedInput


@dataclasses.dataclass
class ScoreRequest:
    """One ``/score`` request, as the ASGI app received it.

    Attributes:
        method: HTTP method, upper case.
        query_string: raw query string.
        headers: raw ASGI headers (lower-case names).
        body: the whole body.
        scope: the ASGI scope (for building a WSGI-style request for ``@rawhttp``).
    """

    method: str
    query_string: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes
    scope: Mapping[str, Any]

    def header(self, name: bytes) -> bytes | None:
        """Return the first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def headers_dict(self) -> dict[str, str]:
        """Headers as azmlinfsrv hands them to ``run(request_headers=...)``: ``X-Request-Id``-style names."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            name = key.decode("latin-1").title()
            text = value.decode("latin-1")
            out[name] = f"{out[name]},{text}" if name in out else text
        return out

    def query_json(self) -> dict[str, Any]:
        """Query parameters parsed as azmlinfsrv does: each value as JSON if it parses, repeated keys as lists."""
        grouped: dict[str, list[Any]] = {}
        for key, value in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True):
            grouped.setdefault(key, []).append(_json_or_text(value))
        return {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}

    def is_json(self) -> bool:
        """True when the content type is ``application/json`` or ``application/*+json`` (werkzeug's rule)."""
        raw = self.header(b"content-type")
        if raw is None:
            return False
        mimetype = raw.split(b";", 1)[0].strip().lower()
        return mimetype == b"application/json" or (mimetype.startswith(b"application/") and mimetype.endswith(b"+json"))

    def json_object(self) -> dict[str, Any]:
        """Parse the body as the JSON object inference-schema scripts expect, with azmlinfsrv's messages."""
        if not self.is_json():
            raise UnsupportedInput("Expects Content-Type to be application/json")
        body = self.body
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            if not body:
                raise BadInput("POST body is empty. Expecting a JSON dictionary.") from None
            try:  # the standard library's message is the one azmlinfsrv shows
                value = json.loads(body)
            except ValueError as ex:
                raise BadInput(f"POST body could not be decoded as JSON: {ex}") from None
            except RecursionError:  # orjson stops at 1024 levels; the standard library at the recursion limit
                raise BadInput(TOO_DEEP) from None
        if not isinstance(value, dict):
            raise BadInput("POST body should be a JSON dictionary.")
        return value


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
    except RecursionError:
        raise BadInput(TOO_DEEP) from None


TOO_DEEP = "JSON input is nested too deeply"


@dataclasses.dataclass
class ScoreResult:
    """What ``run()`` gave back.

    Attributes:
        output: the returned value (serialised to JSON by the app) or a response object passed through.
        elapsed_ms: time spent in ``run()``.
    """

    output: Any
    elapsed_ms: float


# --------------------------------------------------------------------------------------------------------------------
# Output serialisation
# --------------------------------------------------------------------------------------------------------------------

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    """Serialise what orjson does not: pandas objects, non-contiguous or object numpy arrays, sets, Decimals."""
    module = type(obj).__module__
    if module.startswith("pandas"):
        if hasattr(obj, "to_dict") and hasattr(obj, "columns"):
            return obj.to_dict(orient="records")
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "isoformat"):
            return obj.isoformat()
    if module == "numpy" and hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if type(obj).__name__ == "Decimal":
        return float(obj)
    if isinstance(obj, bytes | bytearray):
        return obj.decode("utf-8")
    raise TypeError(f"run() returned a value of type {type(obj).__name__}, which cannot be serialised as JSON")


def to_json(output: Any) -> bytes:
    """Serialise a ``run()`` result: None -> ``{}``; numpy and pandas values as lists and numbers.

    Raises:
        RunError: the value cannot be serialised.
    """
    if output is None:
        return b"{}"
    try:
        return orjson.dumps(output, default=_default, option=_ORJSON_OPTIONS)
    except TypeError as ex:
        raise RunError(f"run() returned a value that cannot be serialised as JSON ({ex})") from ex


# run() results that are neither awaitable nor a response object: the per-request checks skip them by type.
PLAIN_RESULT_TYPES = frozenset((list, dict, str, int, float, bool, bytes, tuple, type(None)))
