"""Day-2 commands on local endpoints and on a cluster stack's endpoints (``--stack``), built on ``endpoints.sdk``.

endpoints list [--stack S] [--json]
endpoints show ENDPOINT [--stack S] [--json]
endpoints logs ENDPOINT [--deployment D] [--tail N] [-f] [--stack S]
endpoints regenerate-keys ENDPOINT --key primary|secondary [--stack S] [--json]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from endpoints.cli.output import emit, fail, say

StackOpt = Annotated[
    str | None, typer.Option("--stack", help="A cluster stack (stacks/Pulumi.<stack>.yaml); default: local endpoints.")
]
ProjectOpt = Annotated[
    Path | None, typer.Option("--project", help="Pulumi project folder (with --stack; default: found from here).")
]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Local state folder (default $ENDPOINTS_STATE_DIR or ./.endpoints).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (errors too).")]

_out = Console(highlight=False, soft_wrap=True)


def _local(state_dir: Path | None) -> Any:
    from endpoints.sdk import LocalEndpoints

    return LocalEndpoints(state_dir)


def _workspace(stack: str, project: Path | None) -> Any:
    from endpoints.sdk import Workspace

    return Workspace(stack, project, on_output=lambda line: say(line.rstrip()))


def list_endpoints(
    stack: StackOpt = None, project: ProjectOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False
) -> None:
    """List endpoints: the local ones (router state, scoring URI) or a stack's (kind, URIs)."""
    from endpoints.sdk import EndpointError

    try:
        if stack is not None:
            rows = _workspace(stack, project).endpoints()
        else:
            rows = [
                {"name": r["endpoint"], "kind": "online", "state": r["router_state"], "scoring_uri": r["scoring_uri"]}
                for r in _local(state_dir).status()
            ]
    except EndpointError as e:
        raise fail(str(e), as_json) from None
    if as_json:
        emit(rows)
        return
    table = Table("endpoint", "kind", "state" if stack is None else "uri", "scoring / jobs URI")
    for row in rows:
        uri = row.get("scoring_uri") or row.get("jobs_uri") or "-"
        table.add_row(row["name"], row["kind"], row.get("state", stack or ""), uri)
    _out.print(table)


def show(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (or local endpoint folder).")],
    stack: StackOpt = None,
    project: ProjectOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one endpoint: URIs, auth mode, traffic and mirror shares, deployments (image, state)."""
    from endpoints.sdk import EndpointError

    try:
        info = _workspace(stack, project).show(endpoint) if stack else _local(state_dir).status(endpoint)[0]
    except EndpointError as e:
        raise fail(str(e), as_json) from None
    if as_json:
        emit(info)
        return
    name = info.get("name") or info.get("endpoint")
    _out.print(f"endpoint {name} ({info.get('kind', 'online')}, auth {info.get('auth_mode')})", markup=False)
    for key in ("scoring_uri", "swagger_uri", "jobs_uri"):
        if info.get(key):
            _out.print(f"  {key.replace('_', ' ')}: {info[key]}", markup=False)
    if stack is not None:
        table = Table("deployment", "traffic %", "mirror %", "instances", "image")
        for dname, d in info["deployments"].items():
            table.add_row(dname, str(d["traffic"]), str(d["mirror"]), str(d["instance_count"]), d["image"] or "-")
    else:
        table = Table("deployment", "state", "pid", "port", "traffic %", "mirror %")
        for row in info["deployment_states"]:
            table.add_row(*(str(row[k]) for k in ("deployment", "state", "pid", "port", "traffic", "mirror")))
    _out.print(table)


def logs(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (or local endpoint folder).")],
    deployment: Annotated[
        str | None, typer.Option("--deployment", help="One deployment (local: also `router`); default all.")
    ] = None,
    tail: Annotated[int, typer.Option("--tail", min=1, help="Last lines per process or pod.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    stack: StackOpt = None,
    project: ProjectOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print an endpoint's logs: local process logs, or its pods' logs from the Kubernetes API (--stack)."""
    from endpoints.sdk import EndpointError

    started = time.time()  # -f on a cluster: lines stamped after this are new (the tail below may hold a few)
    try:
        if stack is not None:
            workspace = _workspace(stack, project)
            texts = workspace.logs(endpoint, deployment, tail=tail)
        else:
            local = _local(state_dir)
            texts = local.logs(endpoint, deployment, tail)
    except EndpointError as e:
        raise fail(str(e), as_json) from None
    if as_json and not follow:
        emit(texts)
        return
    for name, text in texts.items():
        if len(texts) > 1:
            _out.print(f"==> {name} <==", markup=False)
        if text:
            typer.echo(text.rstrip("\n"))
    if not follow:
        return
    try:
        follow_lines = (
            workspace.follow_logs(endpoint, deployment, after=started)
            if stack
            else local.follow_logs(endpoint, deployment)
        )
        for name, line in follow_lines:
            typer.echo(f"{name} | {line}" if len(texts) > 1 else line)
    except KeyboardInterrupt:
        return
    except EndpointError as e:
        raise fail(str(e), as_json) from None


def regenerate_keys(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (or local endpoint folder).")],
    key: Annotated[str, typer.Option("--key", help="Which key: primary or secondary.", show_default=False)],
    stack: StackOpt = None,
    project: ProjectOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace one key; the other keeps working throughout (rotate the one your callers are not using).

    Local: the key file is replaced and every serving process accepts the new key before this returns.
    Cluster (--stack): its generation is counted up in the stack file, then preview (policy pack) and up.
    """
    from endpoints.sdk import EndpointError

    if key not in ("primary", "secondary"):
        raise fail(f"--key: got {key!r}; choose primary or secondary", as_json)
    try:
        if stack is not None:
            report = _workspace(stack, project).regenerate_keys(endpoint, key)
            report.pop("credentials", None)  # keys are printed by get-credentials only, never in a report
        else:
            _local(state_dir).regenerate_keys(endpoint, key)
            report = {"endpoint": endpoint, "regenerated": key}
    except EndpointError as e:
        raise fail(str(e), as_json) from None
    if as_json:
        emit(report)
        return
    _out.print(
        f"regenerated the {key} key of {endpoint}; `endpoints get-credentials {endpoint}"
        f"{' --stack ' + stack if stack else ''}` prints it",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``endpoints list``, ``show``, ``logs`` and ``regenerate-keys``."""
    app.command("list")(list_endpoints)
    app.command("show")(show)
    app.command("logs")(logs)
    app.command("regenerate-keys")(regenerate_keys)
