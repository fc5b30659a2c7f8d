"""The ``endpoints`` command line (Typer): one sub-app or command group per module."""

from __future__ import annotations
