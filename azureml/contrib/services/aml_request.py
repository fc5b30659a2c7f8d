"""``azureml.contrib.services.aml_request``: the raw-HTTP API of Azure ML scoring scripts.

Scoring scripts written for Azure ML import ``rawhttp`` and ``AMLRequest`` from here; this shim makes them run
unmodified on this toolkit's inference server (``serving``). ``AMLRequest`` is a ``werkzeug.Request`` (the class
behind ``flask.Request``) so ``.files``, ``.form``, ``.args``, ``.headers``, ``.method``, ``.get_data()`` and
``.get_json()`` behave exactly as in azureml-inference-server-http.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from werkzeug.wrappers import Request

F = TypeVar("F", bound=Callable[..., Any])

# Kept for scripts and tools that read Azure's module-level flag; the server reads the function attribute instead,
# so two scripts loaded in one process do not influence each other.
_rawHttpRequested = False

RAWHTTP_ATTR = "__aml_rawhttp__"


def rawhttp(func: F) -> F:
    """Mark ``run()`` as wanting the raw request (an ``AMLRequest``) instead of the parsed body.

    Args:
        func: the scoring script's ``run`` function.

    Returns:
        ``func`` itself, marked.
    """
    global _rawHttpRequested
    _rawHttpRequested = True
    setattr(func, RAWHTTP_ATTR, True)
    return func


class AMLRequest(Request):
    """The request handed to a ``@rawhttp`` ``run()``: a ``werkzeug.Request`` built from the ASGI request."""


__all__ = ["AMLRequest", "rawhttp"]
