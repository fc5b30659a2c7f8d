"""Entry point of the ``endpoints`` command.

Each command module in this package exposes ``register(app)``; this module only assembles them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Annotated

import typer

from endpoints import __version__

# Order is the order of ``endpoints --help``.
COMMAND_MODULES = ("validate", "serve", "token", "local", "batch", "plan", "promote")


def build_app() -> typer.Typer:
    """Build the Typer application with every command module registered."""
    app = typer.Typer(
        name="endpoints",
        help="Azure ML-style online and batch endpoints on your own Kubernetes, and on one machine.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,  # secrets must never leak into tracebacks
        add_completion=False,
    )

    @app.callback(invoke_without_command=True)
    def _root(
        ctx: typer.Context,
        version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    ) -> None:
        if version:
            typer.echo(__version__)
            raise typer.Exit()
        if ctx.invoked_subcommand is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()

    for name in COMMAND_MODULES:
        module_name = f"endpoints.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(app)
    return app


def main() -> None:
    """Run the ``endpoints`` command."""
    build_app()()


if __name__ == "__main__":
    main()
