"""``endpoints plan``: what a stack would create, validated and policy-checked, without a cluster or the Pulumi CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from endpoints.errors import SpecError

if TYPE_CHECKING:
    from endpoints.app.plan import PlanDiff, StackPlan

_MAX_CHANGES_SHOWN = 8


def error_text(error: SpecError) -> str:
    """The problems of ``error``, one per line; messages that already name their file are printed as they are."""
    from endpoints.sdk.errors import spec_message

    return spec_message(error)


def find_repo_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding ``Pulumi.yaml`` (the Pulumi project).

    Raises:
        typer.BadParameter: no such folder.
    """
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    raise typer.BadParameter(f"{start}: no Pulumi.yaml here or above; run from the project or pass --project")


def plan(
    stack: Annotated[str, typer.Option("--stack", help="Stack name: stacks/Pulumi.<stack>.yaml.", show_default=False)],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write one YAML manifest per object and plan.json here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan summary as JSON.")] = False,
    diff_from: Annotated[
        str | None, typer.Option("--diff-from", help="Another stack to compare with (e.g. the one promoted from).")
    ] = None,
    project: Annotated[
        Path | None, typer.Option("--project", help="Pulumi project folder (default: found from the current one).")
    ] = None,
) -> None:
    """Render every object of a stack, validate each against its schema, run the policy pack's rules.

    Exits 1 when `pulumi up` would fail: a schema problem, or a violation in a stack whose enforcement is mandatory.
    """
    root = (project or find_repo_root(Path.cwd())).resolve()
    try:
        # Imported here: the plan pulls in the builders and schema validators, which other commands do not need.
        from endpoints.app.plan import diff_plans, plan_stack, write_manifests

        result = plan_stack(root, stack)
        base = plan_stack(root, diff_from, check=False) if diff_from else None
    except SpecError as e:
        Console(stderr=True, highlight=False, soft_wrap=True).print(error_text(e), markup=False)
        raise typer.Exit(code=1) from None
    except ImportError as e:
        message = plan_extra_error(e, "plan")
        if message is None:
            raise
        typer.echo(message, err=True)
        raise typer.Exit(code=1) from None
    diff = diff_plans(result, base) if base is not None else None
    written = write_manifests(result, out) if out is not None else []

    if as_json:
        report = result.summary()
        if diff is not None:
            report["diff"] = diff.to_dict()
        if out is not None:
            report["manifests"] = str(out)
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_text(result, diff, out, len(written))
    if result.blocked:
        raise typer.Exit(code=1)


# Top-level modules of the ``plan`` extra (pyproject.toml): the README's quick start installs only ``[ml]``.
PLAN_EXTRA_MODULES = ("jsonschema", "kubernetes_validate", "referencing", "jsonschema_specifications")


def plan_extra_error(e: ImportError, command: str) -> str | None:
    """The one-line error for ``endpoints COMMAND`` when ``e`` is a missing module of the ``plan`` extra, else None
    (any other import error is a bug and keeps its traceback)."""
    name = e.name or ""
    if not name:  # raised in a worker process and pickled back: the name is only in the message
        found = re.search(r"module named '([^']+)'|import of (\S+) halted", str(e))
        name = next((g for g in found.groups() if g), "") if found else ""
    top = name.split(".")[0]
    if top not in PLAN_EXTRA_MODULES:
        return None
    return (
        f"error: endpoints {command} needs the 'plan' extra (module {top!r} is not installed): "
        "pip install 'k8s-ml-endpoints[plan]' (in a checkout: pip install -e '.[plan]')"
    )


def _print_text(result: StackPlan, diff: PlanDiff | None, out: Path | None, written: int) -> None:
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"stack {result.stack}: {len(result.objects)} objects, environment {result.environment}, "
        f"policies {result.level}",
        markup=False,
    )
    kinds = Table("kind", "objects", title="objects by kind", title_justify="left")
    for kind, n in result.objects_by_kind().items():
        kinds.add_row(kind, str(n))
    console.print(kinds)
    if result.schema_problems:
        console.print(f"schema problems: {len(result.schema_problems)}", markup=False)
        for p in result.schema_problems:
            console.print(f"  error {p.ref}: {p.message}", markup=False)
    else:
        console.print("schema: every object validates", markup=False)
    levels = result.violations_by_level()
    console.print(f"violations: mandatory {levels['mandatory']}, advisory {levels['advisory']}", markup=False)
    for v in result.violations:
        console.print(f"  [{result.level}] {v.policy} {v.ref()}: {v.message}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    if diff is not None:
        console.print(
            f"diff from {diff.base}: {len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed",
            markup=False,
        )
        for ref in diff.added:
            console.print(f"  + {ref}", markup=False)
        for ref in diff.removed:
            console.print(f"  - {ref}", markup=False)
        for ref, lines in diff.changed.items():
            console.print(f"  ~ {ref}", markup=False)
            for line in lines[:_MAX_CHANGES_SHOWN]:
                console.print(f"      {line}", markup=False)
            if len(lines) > _MAX_CHANGES_SHOWN:
                console.print(f"      ... {len(lines) - _MAX_CHANGES_SHOWN} more", markup=False)
    if out is not None:
        console.print(f"wrote {written} files to {out}", markup=False)
    console.print("result: BLOCKED" if result.blocked else "result: ok", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``endpoints plan`` to the CLI."""
    app.command("plan")(plan)
