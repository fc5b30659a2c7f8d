"""``endpoints validate``: check spec files and endpoint folders without touching any cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from endpoints.errors import Problem, SpecError
from endpoints.loader import load_spec
from endpoints.project import ENDPOINT_FILE, load_endpoint_project


def validate_paths(paths: list[Path]) -> tuple[list[str], list[Problem], list[str]]:
    """Validate files and endpoint folders.

    Args:
        paths: Spec files, or folders holding ``endpoint.yml`` (an endpoint project) or spec files.

    Returns:
        The files or folders that are valid, every problem found, and notes on accepted-but-ignored fields.
    """
    valid: list[str] = []
    problems: list[Problem] = []
    notes: list[str] = []
    for path in paths:
        try:
            if path.is_dir() and (path / ENDPOINT_FILE).is_file():
                project = load_endpoint_project(path)
                notes += project.notes
            elif path.is_dir():
                files = sorted([*path.glob("*.yml"), *path.glob("*.yaml")])
                if not files:
                    raise SpecError([Problem(str(path), None, "", "no endpoint.yml and no YAML files in this folder")])
                _, sub_problems, sub_notes = validate_paths(files)
                problems += sub_problems
                notes += sub_notes
                if sub_problems:
                    continue
            else:
                spec = load_spec(path)
                notes += [f"{path}: {n}" for n in getattr(spec, "notes", list)()]
            valid.append(str(path))
        except SpecError as e:
            problems += e.problems
    return valid, problems, notes


def validate(
    paths: Annotated[list[Path], typer.Argument(help="Spec files or endpoint folders.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report instead of text.")] = False,
) -> None:
    """Validate Azure ML CLI v2 specs: exit 0 when valid, else one line per problem and exit 1."""
    valid, problems, notes = validate_paths(paths)
    if as_json:
        report = {"valid": not problems, "checked": valid, "problems": [p.to_dict() for p in problems], "notes": notes}
        typer.echo(json.dumps(report, indent=2))
    else:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for problem in problems:
            err.print(str(problem), markup=False)
        out = Console(highlight=False, soft_wrap=True)
        for note in notes:
            out.print(f"note: {note}", markup=False)
        for path in valid:
            out.print(f"ok: {path}", markup=False)
    if problems:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``endpoints validate`` to the CLI."""
    app.command("validate")(validate)
