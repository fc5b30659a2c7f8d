"""The SDK's one exception type (a leaf module: it imports nothing of the project)."""

from __future__ import annotations


class EndpointError(RuntimeError):
    """A call to an endpoint, a job API, a local endpoint or a stack failed; the message says what to do.

    Attributes:
        status: HTTP status of the answer that failed, when there was one.
        request_id: The request id of that answer, when the server gave one.
    """

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class StaleChangeError(EndpointError):
    """A confirmed change is not the one that was previewed: the stack file changed since, or the change differs."""


def spec_message(error: Exception) -> str:
    """The text of an ``endpoints.errors.SpecError`` as the CLI prints it (one problem a line; a problem that
    names its own file is printed as it is), or ``str(error)`` for any other exception."""
    problems = getattr(error, "problems", None)
    if not problems:
        return str(error)
    return "\n".join(p.message if p.file is None and p.line is None and not p.path else str(p) for p in problems)
