"""``endpoints local ...``, ``endpoints invoke``, ``endpoints get-credentials``: endpoints on this machine.

endpoints local up ENDPOINT_DIR [--endpoint-file endpoint.mirror.yml] [--port 8765] [--detach]
endpoints local status [ENDPOINT] [--json]
endpoints local logs [DEPLOYMENT] [--endpoint NAME] [--tail 50] [--follow]
endpoints local update ENDPOINT_DIR [--endpoint-file F]
endpoints local down [ENDPOINT]
endpoints invoke ENDPOINT|FOLDER|URL (--request-file F [--content-type T] | --file NAME=PATH ...) [--deployment NAME]
    [--stack S] [--json]
endpoints get-credentials ENDPOINT [--stack S]
"""

from __future__ import annotations

import json
import mimetypes
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contract.keys import SIGNING_KEY_FILE
from endpoints.cli.output import emit, fail
from endpoints.errors import SpecError
from endpoints.local.routing import PIN_HEADER
from endpoints.local.state import (
    EndpointState,
    StateDir,
    known_endpoints,
    read_keys,
    state_root,
)
from endpoints.local.supervisor import DEFAULT_PORT, LocalError, Supervisor, log_tail, stop_endpoint
from endpoints.project import ENDPOINT_FILE, load_endpoint_project
from endpoints.sdk.local import endpoint_summary
from endpoints.sdk.local_access import endpoint_urls

local_app = typer.Typer(
    help="Run an online endpoint on this machine: serving processes + a local router, no cluster.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="State folder (default $ENDPOINTS_STATE_DIR or ./.endpoints).", show_default=False
    ),
]
EndpointFileOption = Annotated[
    str, typer.Option("--endpoint-file", help="Endpoint file inside the folder, e.g. endpoint.mirror.yml.")
]

_err = Console(stderr=True, highlight=False, soft_wrap=True)
_out = Console(highlight=False, soft_wrap=True)


def _say(line: str) -> None:
    _err.print(line, markup=False)


def _fail(message: str) -> typer.Exit:
    _err.print(f"error: {message}", markup=False)
    return typer.Exit(code=1)


def _load(endpoint_dir: Path, endpoint_file: str) -> Any:
    if not endpoint_dir.is_dir():
        raise typer.BadParameter(f"{endpoint_dir}: no such folder", param_hint="ENDPOINT_DIR")
    try:
        return load_endpoint_project(endpoint_dir, endpoint_file)
    except SpecError as e:
        raise _fail(str(e)) from None


_urls = endpoint_urls
_summary = endpoint_summary


def _print_started(state: EndpointState) -> None:
    urls = _urls(state)
    _out.print(f"endpoint {state.endpoint} is up", markup=False)
    _out.print(f"  scoring URI: {urls['scoring_uri']}", markup=False)
    _out.print(f"  swagger URI: {urls['swagger_uri']}", markup=False)
    _out.print(f"  traffic: {state.traffic}  mirror: {state.mirror_traffic or 'none'}", markup=False)
    for name, store in sorted(state.data_collectors.items()):
        _out.print(f"  data collector ({name}): {store}", markup=False)
    credential = "key" if state.auth_mode == "key" else "token"
    _out.print(f"  {credential}: endpoints get-credentials {state.endpoint}", markup=False)
    _out.print(f"  try: endpoints invoke {state.endpoint} --request-file <file.json>", markup=False)


def up(
    endpoint_dir: Annotated[Path, typer.Argument(help="Endpoint folder (endpoint.yml + deployments/).")],
    endpoint_file: EndpointFileOption = ENDPOINT_FILE,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help=f"Router port (default: last one, else {DEFAULT_PORT}; 0 = free)."
        ),
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Return once every deployment is ready.")] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the deployments to be ready.")
    ] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the endpoint's URIs and processes as JSON.")] = False,
    state_dir: StateOption = None,
) -> None:
    """Start (or reconcile) an endpoint locally; without --detach, Ctrl-C stops everything."""
    project = _load(endpoint_dir, endpoint_file)
    root = state_root(state_dir)
    try:
        supervisor = Supervisor(project, root, say=_say)
    except LocalError as e:
        raise _fail(str(e)) from None
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    if not detach:
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    before = supervisor.dir.load()
    was_running = bool(before and before.alive_records())
    try:
        state = supervisor.up(port, foreground=not detach, ready_timeout_s=timeout_s)
    except LocalError as e:
        if not detach and not was_running:
            stop_endpoint(supervisor.dir)  # a failed fresh start in the foreground leaves nothing behind
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(_summary(state), indent=2))
    else:
        _print_started(state)
    if detach:
        return
    _say("running in the foreground; Ctrl-C stops the endpoint")
    try:
        supervisor.watch(lambda: stopping)
    finally:
        _say("stopping...")
        stop_endpoint(supervisor.dir, say=_say)


def update(
    endpoint_dir: Annotated[Path, typer.Argument(help="Endpoint folder (endpoint.yml + deployments/).")],
    endpoint_file: EndpointFileOption = ENDPOINT_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the endpoint's URIs and processes as JSON.")] = False,
    state_dir: StateOption = None,
) -> None:
    """Apply changed traffic/mirror rules (no restart) and restart only changed deployments."""
    project = _load(endpoint_dir, endpoint_file)
    root = state_root(state_dir)
    state = StateDir(root, project.endpoint.name).load()
    if state is None or state.router is None or not state.router.alive():
        raise _fail(
            f"endpoint {project.endpoint.name} is not running; start it with `endpoints local up {endpoint_dir}`"
        )
    try:
        state = Supervisor(project, root, say=_say).up(None, foreground=False)
    except LocalError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(_summary(state), indent=2))
    else:
        _print_started(state)


def _pick(root: Path, endpoint: str | None) -> StateDir:
    names = known_endpoints(root)
    if endpoint is not None:
        if endpoint not in names:
            raise _fail(f"no local endpoint named {endpoint!r} in {root} (known: {', '.join(names) or 'none'})")
        return StateDir(root, endpoint)
    if len(names) == 1:
        return StateDir(root, names[0])
    if not names:
        raise _fail(f"no local endpoints in {root}; start one with `endpoints local up ENDPOINT_DIR`")
    raise _fail(f"several local endpoints ({', '.join(names)}); name one with --endpoint")


def status(
    endpoint: Annotated[str | None, typer.Argument(help="Endpoint name (default: every local endpoint).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    state_dir: StateOption = None,
) -> None:
    """Show each local endpoint's router and deployments: running, ready, crashed or stopped."""
    from endpoints.sdk import EndpointError, LocalEndpoints

    root = state_root(state_dir)
    try:
        report = LocalEndpoints(root).status(endpoint)
    except EndpointError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    if not report:
        _out.print(f"no local endpoints in {root}", markup=False)
    for item in report:
        _out.print(f"endpoint {item['endpoint']}: router {item['router_state']}  {item['scoring_uri']}", markup=False)
        table = Table("deployment", "state", "pid", "port", "traffic %", "mirror %")
        for row in item["deployment_states"]:
            table.add_row(*(str(row[k]) for k in ("deployment", "state", "pid", "port", "traffic", "mirror")))
        if item["deployment_states"]:
            _out.print(table)
        for name, store in sorted(item.get("data_collectors", {}).items()):
            _out.print(f"  data collector ({name}): {store}", markup=False)
        else:
            _out.print("  stopped (`endpoints local up` starts it again)", markup=False)
    if any(
        r["router_state"] == "crashed" or any(d["state"] == "crashed" for d in r["deployment_states"]) for r in report
    ):
        _err.print("some processes crashed; `endpoints local up ENDPOINT_DIR` restarts them", markup=False)
        raise typer.Exit(code=1)


def logs(
    deployment: Annotated[str | None, typer.Argument(help="Deployment name, or `router` (default: all).")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Endpoint name (needed if several).")] = None,
    tail: Annotated[int, typer.Option("--tail", min=1, help="Lines per log.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    state_dir: StateOption = None,
) -> None:
    """Print the logs of a local endpoint's deployments (and router)."""
    dir_ = _pick(state_root(state_dir), endpoint)
    available = sorted(p.stem for p in dir_.logs_dir.glob("*.log")) if dir_.logs_dir.is_dir() else []
    if deployment is not None and deployment not in available:
        raise _fail(f"no log for {deployment!r} (logs: {', '.join(available) or 'none'})")
    names = [deployment] if deployment else available
    for name in names:
        if len(names) > 1:
            _out.print(f"==> {name} <==", markup=False)
        text = log_tail(dir_.log_file(name), tail)
        if text:
            typer.echo(text)
    if not follow:
        return
    from endpoints.sdk import LocalEndpoints

    try:
        for name, line in LocalEndpoints(dir_.root).follow_logs(dir_.endpoint, deployment):
            typer.echo(f"{name} | {line}" if len(names) > 1 else line)
    except KeyboardInterrupt:
        return


def down(
    endpoint: Annotated[str | None, typer.Argument(help="Endpoint name (default: every local endpoint).")] = None,
    state_dir: StateOption = None,
) -> None:
    """Stop a local endpoint's router and deployments (keys and logs stay for the next `up`)."""
    root = state_root(state_dir)
    names = [_pick(root, endpoint).endpoint] if endpoint else known_endpoints(root)
    total = 0
    for name in names:
        total += stop_endpoint(StateDir(root, name), say=_say)
    _out.print(f"stopped {total} process(es)", markup=False)


def _credential(dir_: StateDir, state: EndpointState) -> str:
    if state.auth_mode == "key":
        return read_keys(dir_.keys_dir)["primaryKey"]
    if state.auth_mode == "aml_token":
        from serving.frontend.auth import mint_aml_token

        token, _ = mint_aml_token((dir_.keys_dir / SIGNING_KEY_FILE).read_bytes().strip(), state.endpoint)
        return token
    raise _fail(f"endpoint {state.endpoint} uses aad_token; pass a token from your identity provider with --token")


def get_credentials(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    stack: Annotated[
        str | None, typer.Option("--stack", help="Read the keys of a cluster stack's endpoint (its secret outputs).")
    ] = None,
    project: Annotated[Path | None, typer.Option("--project", help="Pulumi project folder (with --stack).")] = None,
    state_dir: StateOption = None,
) -> None:
    """Print an endpoint's keys (key auth) or a fresh 1-hour token (local aml_token), as Azure's JSON."""
    if stack is not None:
        from endpoints.sdk import EndpointError, Workspace

        try:
            typer.echo(json.dumps(Workspace(stack, project).credentials(endpoint)))
        except EndpointError as e:
            raise fail(str(e), as_json=True) from None
        return
    dir_ = _pick(state_root(state_dir), endpoint)
    state = dir_.load()
    assert state is not None
    if state.auth_mode == "key":
        typer.echo(json.dumps(read_keys(dir_.keys_dir)))
    elif state.auth_mode == "aml_token":
        from endpoints.cli.token import token as mint

        mint(endpoint, signing_key_file=dir_.keys_dir / SIGNING_KEY_FILE, as_json=True)
    else:
        raise _fail(f"endpoint {endpoint} uses aad_token; get a token from your identity provider")


def _multipart_files(specs: list[str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``NAME=PATH`` options as multipart parts (field name, (file name, bytes, content type))."""
    parts = []
    for spec in specs:
        name, sep, path_text = spec.partition("=")
        if not sep or not name or not path_text:
            raise typer.BadParameter(f"got {spec!r}; write NAME=PATH, e.g. image=car.jpg", param_hint="--file")
        path = Path(path_text)
        if not path.is_file():
            raise typer.BadParameter(f"got {spec!r}; {path_text}: no such file", param_hint="--file")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        parts.append((name, (path.name, path.read_bytes(), kind)))
    return parts


def _invoke_client(
    endpoint: str, token: str | None, stack: str | None, project: Path | None, state_dir: Path | None, timeout_s: float
) -> Any:
    from endpoints.sdk import OnlineEndpointClient, Workspace

    if endpoint.startswith(("http://", "https://")):
        return OnlineEndpointClient(endpoint, token=token, timeout=timeout_s)
    if stack is not None:
        workspace = Workspace(stack, project)
        uri = workspace.show(endpoint).get("scoring_uri")
        if not uri:
            raise typer.BadParameter(f"stack {stack} exports no scoring URI for {endpoint!r}", param_hint="ENDPOINT")
        credential = token or workspace.credentials(endpoint)["primaryKey"]
        return OnlineEndpointClient(uri, token=credential, timeout=timeout_s)
    if token is not None:
        from endpoints.sdk.local import LocalEndpoints

        uri, _ = LocalEndpoints(state_root(state_dir)).connection(endpoint)
        return OnlineEndpointClient(uri, token=token, timeout=timeout_s)
    return OnlineEndpointClient.local(endpoint, state_dir=state_root(state_dir), timeout=timeout_s)


def invoke(
    endpoint: Annotated[
        str, typer.Argument(help="Local endpoint name or folder, a scoring URI (http[s]://...), or a stack's endpoint.")
    ],
    request_file: Annotated[
        Path | None,
        typer.Option(
            "--request-file",
            exists=True,
            dir_okay=False,
            help="Request body sent as is: JSON (.json) or raw bytes (content type from --content-type, else the"
            " file's extension).",
        ),
    ] = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "--file",
            help="NAME=PATH: send PATH as the multipart/form-data part NAME (repeatable; instead of --request-file).",
        ),
    ] = None,
    content_type: Annotated[
        str | None, typer.Option("--content-type", help="Content type of --request-file (default from its extension).")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", help=f"Pin a deployment ({PIN_HEADER} header).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="ENDPOINTS_KEY", help="Key or token to send (default: the endpoint's own)."),
    ] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the answer.")] = 60.0,
    stack: Annotated[str | None, typer.Option("--stack", help="Invoke a cluster stack's endpoint.")] = None,
    project: Annotated[Path | None, typer.Option("--project", help="Pulumi project folder (with --stack).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print status, request id, deployment and body as JSON.")
    ] = False,
    state_dir: StateOption = None,
) -> None:
    """Send a request to an endpoint's scoring URI and print the answer (exit 1 unless 2xx).

    Answers 429/503 are retried after the server's Retry-After (3 times at most, 30 s in all).
    """
    from endpoints.sdk import EndpointError

    if (request_file is None) == (not files):
        raise typer.BadParameter("give either --request-file or one or more --file NAME=PATH", param_hint="--file")
    if files and content_type:
        raise typer.BadParameter(
            f"got {content_type!r}; a multipart request's content type is set by --file", param_hint="--content-type"
        )
    parts = _multipart_files(files or [])
    if request_file is not None and content_type is None:
        content_type = "application/json"
        if request_file.suffix.lower() != ".json":
            content_type = mimetypes.guess_type(request_file.name)[0] or "application/octet-stream"
    try:
        client = _invoke_client(endpoint, token, stack, project, state_dir, timeout_s)
        with client:
            if request_file is not None:
                result = client.invoke(data=request_file.read_bytes(), content_type=content_type, deployment=deployment)
            else:  # httpx sets multipart/form-data with its boundary
                result = client.invoke(files=parts, deployment=deployment)
    except EndpointError as e:
        raise fail(str(e), as_json) from None
    if as_json:
        try:
            body: Any = result.json()
        except EndpointError:
            body = result.text
        emit(
            {
                "status": result.status,
                "request_id": result.request_id,
                "deployment": result.deployment,
                "attempts": result.attempts,
                "body": body,
            }
        )
    else:
        _err.print(f"HTTP {result.status} from deployment {result.deployment or '-'}", markup=False)
        sys.stdout.write(result.text + ("\n" if not result.text.endswith("\n") else ""))
    if not result.ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``endpoints local ...``, ``endpoints invoke`` and ``endpoints get-credentials`` to the CLI."""
    local_app.command("up")(up)
    local_app.command("status")(status)
    local_app.command("logs")(logs)
    local_app.command("update")(update)
    local_app.command("down")(down)
    app.add_typer(local_app, name="local")
    app.command("invoke")(invoke)
    app.command("get-credentials")(get_credentials)
