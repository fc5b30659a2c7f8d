"""`endpoints` registers only the module a command line needs, and the map of owners stays true."""

from __future__ import annotations

import subprocess
import sys

import typer

from endpoints.cli.main import COMMAND_MODULES, COMMAND_OWNERS, build_app, modules_for


def _top_level_names(app: typer.Typer) -> set[str]:
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    return names | {g.name for g in app.registered_groups if g.name}


def test_owner_map_matches_what_each_module_registers() -> None:
    registered = {name: module for module in COMMAND_MODULES for name in _top_level_names(build_app((module,)))}
    assert registered == COMMAND_OWNERS


def test_modules_for_picks_the_owner_or_everything() -> None:
    assert modules_for(["plan", "--stack", "dev"]) == ("plan",)
    assert modules_for(["get-credentials", "cars"]) == ("local",)
    assert modules_for(["--help"]) == COMMAND_MODULES
    assert modules_for([]) == COMMAND_MODULES
    assert modules_for(["no-such-command"]) == COMMAND_MODULES


def test_plan_command_does_not_import_the_serving_stack() -> None:
    code = (
        "import sys; from endpoints.cli.main import main; sys.argv = ['endpoints', 'plan', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('httpx', 'jwt', 'serving.frontend', 'endpoints.local.supervisor') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
