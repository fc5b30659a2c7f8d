"""``endpoints promote``: move a deployment's pinned image and model from one stack file to the next."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from endpoints.errors import SpecError


def promote(
    deployment: Annotated[str, typer.Argument(help="Deployment name, e.g. bob.", show_default=False)],
    source: Annotated[str, typer.Option("--from", help="Stack to promote from, e.g. dev.", show_default=False)],
    target: Annotated[str, typer.Option("--to", help="Stack to promote to, e.g. staging.", show_default=False)],
    traffic: Annotated[
        int | None, typer.Option("--traffic", help="Give it this percent of live traffic in the target (0-100).")
    ] = None,
    mirror: Annotated[
        int | None, typer.Option("--mirror", help="Mirror this percent of live traffic to it in the target (0-50).")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Endpoint holding the deployment (default: the only one).")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Image to pin (name@sha256:...) when the source stack builds its images."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON.")] = False,
    project: Annotated[
        Path | None, typer.Option("--project", help="Pulumi project folder (default: found from the current one).")
    ] = None,
) -> None:
    """Copy DEPLOYMENT's pinned image and model from one stack's config to another's, keeping everything else.

    The promoted stack is planned and policy-checked first; a promotion that breaks an enforced rule is refused.
    """
    if traffic is not None and mirror is not None:
        raise typer.BadParameter("pick one of --traffic and --mirror; a deployment is mirrored first")
    from endpoints.app.promote import promote as compute
    from endpoints.cli.plan import error_text, find_repo_root, plan_extra_error

    root = (project or find_repo_root(Path.cwd())).resolve()
    try:
        result = compute(
            root, deployment, source, target, endpoint=endpoint, traffic=traffic, mirror=mirror, image=image
        )
    except SpecError as e:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"promote refused: {error_text(e)}", markup=False)
        raise typer.Exit(code=1) from None
    except ImportError as e:
        message = plan_extra_error(e, "promote")
        if message is None:
            raise
        typer.echo(message, err=True)
        raise typer.Exit(code=1) from None
    written = bool(result.changes) and not dry_run
    if written:
        result.path.write_text(result.text, encoding="utf-8")
    if as_json:
        report = {
            "file": str(result.path),
            "changes": result.changes,
            "advisories": result.notes,
            "written": written,
        }
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console(highlight=False, soft_wrap=True)
    if not result.changes:
        console.print(f"{result.path}: already up to date; nothing to promote", markup=False)
        return
    for line in result.changes:
        console.print(line, markup=False)
    for note in result.notes:
        console.print(f"advisory: {note}", markup=False)
    if dry_run:
        diff = difflib.unified_diff(
            result.original.splitlines(keepends=True),
            result.text.splitlines(keepends=True),
            str(result.path),
            str(result.path),
        )
        console.print("".join(diff), markup=False, end="")
        console.print("dry run: nothing written", markup=False)
    else:
        console.print(
            f"wrote {result.path}; review with `endpoints plan --stack {target} --diff-from {source}`", markup=False
        )


def register(app: typer.Typer) -> None:
    """Add ``endpoints promote`` to the CLI."""
    app.command("promote")(promote)
