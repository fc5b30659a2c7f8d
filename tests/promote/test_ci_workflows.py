"""The GitHub Actions examples: valid YAML, the gates they promise, and only `endpoints` commands our CLI has."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from endpoints.cli.main import build_app

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"
WORKFLOWS = sorted(CI.glob("*.yml"))
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
_SHELL_VAR = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in workflow["jobs"].values():
        yield from job.get("steps", [])


def _commands(script: str, program: str) -> Iterator[list[str]]:
    """Every invocation of ``program`` in a shell script, as argv (``${{ }}`` expressions and ``$VARS`` read as ``10``:
    any value that an integer option accepts too)."""
    text = _EXPRESSION.sub("10", script.replace("\\\n", " "))
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("|", "||", "&&", ";", ">", ">>", "<", "(", ")", "2>&1", "&"):
                if argv and argv[0] == program:
                    yield argv
                argv = []
            else:
                argv.append(_SHELL_VAR.sub("10", token))


def _resolve(cli: Any, argv: list[str]) -> tuple[Any, list[str]]:
    # Typer vendors its own click: groups are recognised by their `commands`, errors by TyperException.
    args = list(argv[1:])
    while hasattr(cli, "commands") and args and args[0] in cli.commands:
        cli = cli.commands[args.pop(0)]
    return cli, args


def test_there_are_workflows_for_each_stage() -> None:
    assert [p.name for p in WORKFLOWS] == ["deploy-dev.yml", "preview.yml", "promote.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_endpoints_command_exists_with_its_options(path: Path) -> None:
    cli = typer.main.get_command(build_app())
    found = 0
    for step in _steps(_load(path)):
        for argv in _commands(step.get("run", ""), "endpoints"):
            command, args = _resolve(cli, argv)
            assert command is not cli, f"{path.name}: {step.get('name')}: no command `{' '.join(argv[:2])}`"
            # Parses options and arguments exactly as the CLI would; unknown options raise UsageError.
            try:
                with command.make_context(" ".join(argv[:2]), args):
                    pass
            except typer.TyperException as e:
                pytest.fail(f"{path.name}: {step.get('name')}: `{' '.join(argv)}`: {e.format_message()}")
            found += 1
    assert found > 0, f"{path.name} runs no endpoints command"


def test_command_parser_sees_through_pipes_and_expressions() -> None:
    script = "set -o pipefail\nendpoints plan --stack ${{ matrix.stack }} --json | tee x\necho endpoints plan\n"
    assert list(_commands(script, "endpoints")) == [["endpoints", "plan", "--stack", "10", "--json"]]


def test_a_wrong_option_is_caught() -> None:
    cli = typer.main.get_command(build_app())
    command, args = _resolve(cli, ["endpoints", "promote", "bob", "--from", "dev", "--to", "prod", "--percent", "5"])
    with pytest.raises(typer.TyperException, match="No such option: --percent"), command.make_context("x", args):
        pass


def test_pull_requests_preview_with_the_policy_pack_and_comment() -> None:
    workflow = _load(CI / "preview.yml")
    assert "pull_request" in workflow["on"]
    runs = [s.get("run", "") for s in _steps(workflow)]
    previews = [argv for r in runs for argv in _commands(r, "pulumi") if argv[1] == "preview"]
    assert previews and all("--policy-pack" in a and a[a.index("--policy-pack") + 1] == "policies/" for a in previews)
    assert any(s.get("uses", "").startswith("actions/github-script") for s in _steps(workflow))
    assert workflow["permissions"]["pull-requests"] == "write"


def test_merge_deploys_dev_only() -> None:
    workflow = _load(CI / "deploy-dev.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    ups = [argv for s in _steps(workflow) for argv in _commands(s.get("run", ""), "pulumi") if argv[1] == "up"]
    assert ups == [
        ["pulumi", "up", "--stack", "dev", "--policy-pack", "policies/", "--yes", "--non-interactive", "--diff"]
    ]


def test_promotion_waits_for_the_target_environment() -> None:
    workflow = _load(CI / "promote.yml")
    assert "workflow_dispatch" in workflow["on"]
    assert workflow["on"]["workflow_dispatch"]["inputs"]["to"]["options"] == ["staging", "prod"]
    job = workflow["jobs"]["promote"]
    assert job["environment"] == "${{ inputs.to }}"  # required reviewers of that GitHub environment approve
    ups = [argv for s in _steps(workflow) for argv in _commands(s.get("run", ""), "pulumi") if argv[1] == "up"]
    assert ups and all("--policy-pack" in a for a in ups)
