"""Errors of the scoring app, and the one table that maps each to its HTTP status (KServe keeps a leaf
``errors.py`` the same way). Bodies are ``{"error": "<message>"}`` with no traceback.

Imports nothing (a leaf every serving module may import).
"""

from __future__ import annotations


class ScoringError(Exception):
    """Base of every error the scoring app answers; ``str(error)`` is the body's ``error`` text."""


class BadInput(ScoringError):
    """The request body or query cannot be turned into ``run()`` arguments (400)."""


class UnsupportedInput(ScoringError):
    """The request's content type is not one the scoring function accepts (415)."""


class MethodNotAllowed(ScoringError):
    """The route does not accept the request's method (405)."""


class NotFound(ScoringError):
    """No route or resource (swagger version) by that name (404)."""


class HeaderTooLong(ScoringError):
    """A request-id header is longer than Azure's limit of 100 characters (431)."""


class NotReady(ScoringError):
    """``init()`` has not finished in this worker yet (503)."""


class RunError(ScoringError):
    """The user's ``run()`` raised, or returned a value that cannot be serialised (424, Azure's model error)."""


def describe_exception(ex: BaseException) -> str:
    """``Type: message`` of an exception from scoring code: ``str`` keeps what ``repr`` drops (an OSError's file
    name: ``FileNotFoundError: [Errno 2] No such file or directory: '/models/m.pkl'``)."""
    text = str(ex)
    return f"{type(ex).__name__}: {text}" if text else type(ex).__name__


class ScriptError(ScoringError):
    """The entry script cannot be loaded, has no ``init``/``run``, or ``init()`` raised: the process exits 3."""


ERROR_STATUS: dict[type[ScoringError], int] = {
    BadInput: 400,
    NotFound: 404,
    MethodNotAllowed: 405,
    UnsupportedInput: 415,
    RunError: 424,
    HeaderTooLong: 431,
    ScriptError: 500,
    NotReady: 503,
}


def status_for(error: ScoringError) -> int:
    """Return the HTTP status of ``error``: the entry of its nearest class in :data:`ERROR_STATUS` (default 500)."""
    for cls in type(error).__mro__:
        status = ERROR_STATUS.get(cls)
        if status is not None:
            return status
    return 500
