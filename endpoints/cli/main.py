"""Entry point of the ``endpoints`` command.

Each command module in this package exposes ``register(app)``; this module only assembles them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from endpoints import __version__

# Order is the order of ``endpoints --help``.
COMMAND_MODULES = (
    "validate",
    "serve",
    "token",
    "local",
    "manage",
    "batch",
    "plan",
    "promote",
    "rollout",
    "cluster",
    "studio",
)
# Top-level command -> the module that registers it (a test keeps this equal to what the modules register).
# ``endpoints plan ...`` then imports only the plan module: the others pull in httpx, the serving stack, JWT
# and cryptography, about a second of start-up on a small machine.
COMMAND_OWNERS = {
    "validate": "validate",
    "serve": "serve",
    "token": "token",
    "local": "local",
    "invoke": "local",
    "get-credentials": "local",
    "list": "manage",
    "show": "manage",
    "logs": "manage",
    "regenerate-keys": "manage",
    "batch": "batch",
    "plan": "plan",
    "promote": "promote",
    "rollout": "rollout",
    "cluster": "cluster",
    "studio": "studio",
}


def build_app(modules: Sequence[str] = COMMAND_MODULES) -> typer.Typer:
    """Build the Typer application.

    Args:
        modules: Command modules to register (default: all of them, as ``endpoints --help`` lists them).
    """
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

    for name in modules:
        module_name = f"endpoints.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(app)
    return app


def modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The command modules a command line needs: the owner of its first word, or all of them (help, unknown)."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    owner = COMMAND_OWNERS.get(first or "")
    return (owner,) if owner is not None else COMMAND_MODULES


def main() -> None:
    """Run the ``endpoints`` command."""
    build_app(modules_for(sys.argv[1:]))()


if __name__ == "__main__":
    main()
