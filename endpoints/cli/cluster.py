"""``endpoints cluster up|status|down``: a throwaway Kubernetes control plane on 127.0.0.1 to try ``pulumi up`` on.

Progress goes to stderr; ``up`` prints only ``export KUBECONFIG=...`` on stdout, so ``eval "$(endpoints cluster up)"``
points the shell at the new cluster.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

cluster_app = typer.Typer(
    help="A throwaway Kubernetes control plane on 127.0.0.1 (etcd, kube-apiserver, controller-manager, kwok).",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path,
    typer.Option("--state-dir", help="Folder of the cluster's keys, kubeconfig, data, logs and pids."),
]
_err = Console(stderr=True, highlight=False, soft_wrap=True)


@cluster_app.command("up")
def up(
    state_dir: StateDir = Path(".endpoints/cluster"),
    apiserver_port: Annotated[int, typer.Option("--apiserver-port", min=1, max=65535)] = 6443,
    etcd_port: Annotated[
        int, typer.Option("--etcd-port", min=1, max=65534, help="etcd peers use the next port.")
    ] = 2379,
    kwok_port: Annotated[int, typer.Option("--kwok-port", min=1, max=65535, help="kwok's health endpoint.")] = 10247,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds each component may take to start.")] = 300,
) -> None:
    """Start etcd, kube-apiserver, kube-controller-manager, a scheduler and kwok (fake CPU and GPU nodes).

    Applies the Gateway API, Kueue and KEDA CRDs and the gateways the stacks use; prints the KUBECONFIG to export.
    """
    from endpoints.cluster import ClusterError
    from endpoints.cluster.lifecycle import Ports
    from endpoints.cluster.lifecycle import up as start

    ports = Ports(apiserver=apiserver_port, etcd=etcd_port, etcd_peer=etcd_port + 1, kwok=kwok_port)
    try:
        state = start(state_dir, ports=ports, timeout_s=timeout, progress=lambda line: _err.print(f"  {line}"))
    except ClusterError as e:
        _err.print(f"cluster up failed: {e}", markup=False)
        raise typer.Exit(code=1) from None
    except TimeoutError as e:
        _err.print(
            f"cluster up failed: {e}; logs in {state_dir / 'logs'}; everything started was stopped", markup=False
        )
        raise typer.Exit(code=1) from None
    pids = ", ".join(f"{p.name} {p.pid}" for p in state.processes)
    _err.print(f"cluster up: {state.server} (pids: {pids})", markup=False)
    _err.print(f"stop it with: endpoints cluster down --state-dir {shlex.quote(str(state_dir))}", markup=False)
    typer.echo(f"export KUBECONFIG={shlex.quote(state.kubeconfig)}")


@cluster_app.command("status")
def status(
    state_dir: StateDir = Path(".endpoints/cluster"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show the cluster's processes (by pid), whether the API server is ready and the nodes; changes nothing.

    Exit code 1 when no cluster runs from the state directory or part of it is down.
    """
    from endpoints.cluster.lifecycle import status as read

    st = read(state_dir)
    healthy = st.state is not None and all(st.running.values()) and bool(st.ready)
    if as_json:
        typer.echo(json.dumps({"healthy": healthy, **st.to_dict()}, indent=2))
    elif st.state is None:
        _err.print(f"no cluster in {state_dir}", markup=False)
    else:
        typer.echo(f"server: {st.state.server} ({'ready' if st.ready else 'not ready'})")
        typer.echo(f"kubeconfig: {st.state.kubeconfig}")
        for p in st.state.processes:
            typer.echo(f"  {p.name:<24} pid {p.pid:<8} {'running' if st.running[p.name] else 'STOPPED'}")
        if st.nodes:
            ready = sum(st.nodes.values())
            typer.echo(f"nodes: {ready}/{len(st.nodes)} Ready ({', '.join(sorted(st.nodes))})")
    if not healthy:
        raise typer.Exit(code=1)


@cluster_app.command("down")
def down(state_dir: StateDir = Path(".endpoints/cluster")) -> None:
    """Stop every process the cluster started, by pid, and remove its data (logs stay)."""
    from endpoints.cluster import ClusterError
    from endpoints.cluster.lifecycle import down as stop

    try:
        stopped = stop(state_dir, progress=lambda line: _err.print(f"  {line}", markup=False))
    except ClusterError as e:
        _err.print(f"cluster down: {e}", markup=False)
        raise typer.Exit(code=1) from None
    _err.print(f"cluster down: stopped {len(stopped)} processes", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``endpoints cluster`` to the main command."""
    app.add_typer(cluster_app, name="cluster")
