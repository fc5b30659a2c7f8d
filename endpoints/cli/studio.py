"""``endpoints studio``: a web portal over your endpoints (list, deployments, traffic, test, keys, logs, metrics,
batch jobs), served on 127.0.0.1 with a random access token in the printed URL (as Jupyter does).

endpoints studio [--port 8780] [--host 127.0.0.1] [--batch DIR ...] [--state-dir D]
endpoints studio --stack S [--project DIR] [--prometheus URL] [--endpoint-url NAME=URL ...]
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from endpoints.studio.cluster import ClusterBackend

DEFAULT_PORT = 8780

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PortOption = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to serve on (0 picks a free one).")]
HostOption = Annotated[
    str, typer.Option("--host", help="Address to bind; other than loopback, the studio is reachable from elsewhere.")
]
BatchOption = Annotated[
    list[Path] | None, typer.Option("--batch", help="Batch endpoint folder to show (repeatable).", show_default=False)
]
StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Local endpoints' state (default $ENDPOINTS_STATE_DIR or ./.endpoints).", show_default=False
    ),
]
BatchStateOption = Annotated[
    Path, typer.Option("--batch-state-dir", help="Where local batch jobs keep their state (as `endpoints batch`).")
]
StackOption = Annotated[
    str | None,
    typer.Option(
        "--stack",
        help="Cluster stack (stacks/Pulumi.<stack>.yaml) to show instead of local endpoints.",
        show_default=False,
    ),
]
ProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--project", help="Pulumi project folder (with --stack; default: found from here).", show_default=False
    ),
]
PrometheusOption = Annotated[
    str | None,
    typer.Option(
        "--prometheus",
        help="With --stack: the cluster's Prometheus base URL, for the Metrics tab (e.g. a kubectl port-forward's).",
        show_default=False,
    ),
]
EndpointUrlOption = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint-url",
        help="With --stack: NAME=URL, the URL to call for endpoint NAME instead of its exported scoring or jobs URI "
        "(e.g. a kubectl port-forward's); repeatable.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="ENDPOINTS_STUDIO_TOKEN", help="Access token (default: a random one).", show_default=False
    ),
]


def studio(
    port: PortOption = DEFAULT_PORT,
    host: HostOption = "127.0.0.1",
    batch: BatchOption = None,
    state_dir: StateOption = None,
    batch_state_dir: BatchStateOption = Path(".endpoints/batch"),
    stack: StackOption = None,
    project: ProjectOption = None,
    prometheus: PrometheusOption = None,
    endpoint_url: EndpointUrlOption = None,
    token: TokenOption = None,
) -> None:
    """Serve the studio: endpoints, deployments, traffic, test, keys, logs, metrics and batch jobs in a browser."""
    import socket

    import uvicorn

    from endpoints.local.state import state_root
    from endpoints.studio.app import build_app
    from endpoints.studio.backend import LocalBackend, StudioError

    if token is not None and len(token) < 16:
        raise typer.BadParameter(f"got {len(token)} characters; use at least 16", param_hint="--token")
    if stack is not None and batch:
        raise typer.BadParameter(
            "batch folders are local endpoints; leave out --batch with --stack", param_hint="--batch"
        )
    if project is not None and stack is None:
        raise typer.BadParameter("goes with --stack (a cluster stack's Pulumi project)", param_hint="--project")
    if prometheus is not None and stack is None:
        raise typer.BadParameter(
            "goes with --stack (local endpoints' metrics are scraped by the studio)", param_hint="--prometheus"
        )
    if prometheus is not None and not _http_url(prometheus):
        raise typer.BadParameter(f"got {prometheus!r}; give an http(s):// URL", param_hint="--prometheus")
    if endpoint_url and stack is None:
        raise typer.BadParameter("goes with --stack (a cluster stack's endpoints)", param_hint="--endpoint-url")
    urls = _endpoint_urls(endpoint_url or [])
    for folder in batch or []:
        if not (folder / "endpoint.yml").is_file():
            raise typer.BadParameter(f"{folder}: no endpoint.yml; give a batch endpoint folder", param_hint="--batch")
    backend: LocalBackend | ClusterBackend
    if stack is not None:
        backend = _cluster_backend(stack, project, prometheus, urls)
    else:
        try:
            backend = LocalBackend(state_root(state_dir), list(batch or []), batch_state_dir)
        except StudioError as e:
            raise typer.BadParameter(str(e), param_hint="--batch") from None
    if not _loopback(host):
        _err.print(
            f"warning: serving on {host}: reachable from other machines (the token is still required)", markup=False
        )
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        _err.print(f"error: cannot listen on {host}:{port}: {e.strerror}; choose another --port", markup=False)
        raise typer.Exit(code=1) from None
    bound = sock.getsockname()[1]
    access = token or secrets.token_urlsafe(24)
    app = build_app(backend, access, bound)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url_host = f"[{shown}]" if ":" in shown else shown
    _err.print("endpoints studio is running; open this URL in a browser (Ctrl-C stops it):", markup=False)
    typer.echo(f"    http://{url_host}:{bound}/?token={access}", err=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])


def _http_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) and len(text) > len("https://")


def _endpoint_urls(values: list[str]) -> dict[str, str]:
    """``NAME=URL`` pairs of ``--endpoint-url``.

    Raises:
        typer.BadParameter: not NAME=URL, a URL that is not http(s), or a name given twice (naming the value).
    """
    urls: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not _http_url(url):
            raise typer.BadParameter(f"got {value!r}; give NAME=http(s)://...", param_hint="--endpoint-url")
        if name in urls:
            raise typer.BadParameter(f"got {name!r} twice", param_hint="--endpoint-url")
        urls[name] = url
    return urls


def _cluster_backend(stack: str, project: Path | None, prometheus: str | None, urls: dict[str, str]) -> ClusterBackend:
    """The stack's backend, its stack selected now (a wrong name, backend or passphrase fails here, not in the page);
    an ``--endpoint-url`` name the stack does not have is refused here too."""
    from endpoints.sdk import EndpointError, Workspace
    from endpoints.studio.cluster import ClusterBackend

    try:
        workspace = Workspace(stack, project)
        workspace.stack  # noqa: B018  # selects the stack
        known = [row["name"] for row in workspace.endpoints()] if urls else []
    except EndpointError as e:
        _err.print(f"error: --stack {stack}: {e}", markup=False)
        raise typer.Exit(code=1) from None
    for name in urls:
        if name not in known:
            raise typer.BadParameter(
                f"got {name!r}; stack {stack} has no such endpoint (endpoints: {', '.join(known) or 'none'})",
                param_hint="--endpoint-url",
            )
    return ClusterBackend(workspace, prometheus=prometheus, urls=urls)


def register(app: typer.Typer) -> None:
    """Add ``endpoints studio`` to the main command."""
    app.command("studio")(studio)
