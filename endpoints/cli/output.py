"""Output helpers shared by the commands built on the SDK: JSON on stdout, errors as text or as JSON."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def emit(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def fail(message: str, as_json: bool = False) -> typer.Exit:
    """Report an error (``{"error": ...}`` on stdout with ``--json``, else ``error: ...`` on stderr); exit 1."""
    if as_json:
        typer.echo(json.dumps({"error": message}))
    else:
        _err.print(f"error: {message}", markup=False)
    return typer.Exit(code=1)


def say(line: str) -> None:
    """A progress line on stderr."""
    _err.print(line, markup=False)
