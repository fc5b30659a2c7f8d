"""Local endpoints from Python: start, inspect, rotate keys and stop endpoints that run on this machine.

    local = LocalEndpoints()                       # state in $ENDPOINTS_STATE_DIR or ./.endpoints
    info = local.up("examples/car-classifier", port=0)
    client = local.client("car-classifier")      # an OnlineEndpointClient with the endpoint's key
    local.regenerate_keys("car-classifier", "primary")
    local.down("car-classifier")

Everything here drives the same supervisor as ``endpoints local ...``: the processes outlive the Python session
(like ``endpoints local up --detach``) until :meth:`LocalEndpoints.down`.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

from endpoints.local.state import KEY_FILES, EndpointState, StateDir, read_keys, write_private
from endpoints.sdk.errors import EndpointError, spec_message
from endpoints.sdk.local_access import LocalAccess, endpoint_urls
from endpoints.sdk.online import OnlineEndpointClient

KeyName = Literal["primary", "secondary"]
# The serving and router processes this Python process started: kept (not garbage-collected while they run, which
# would warn) and reaped by :meth:`LocalEndpoints.down`, so no zombie is left behind in a long notebook session.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
KEY_PICKUP_TIMEOUT_S = 10.0


def endpoint_summary(state: EndpointState) -> dict[str, Any]:
    """What ``endpoints local up --json`` prints: URIs, auth mode, traffic, processes."""
    return {
        "endpoint": state.endpoint,
        **endpoint_urls(state),
        "auth_mode": state.auth_mode,
        "traffic": state.traffic,
        "mirror_traffic": state.mirror_traffic,
        "deployments": {n: {"pid": r.pid, "port": r.port} for n, r in state.deployments.items()},
        "data_collectors": state.data_collectors,
        "router": (
            {"pid": state.router.pid, "port": state.router.port, "metrics_port": state.router.metrics_port}
            if state.router
            else None
        ),
    }


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _reap_children() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:  # exited (or already reaped by the supervisor's stop: returncode 0)
            del _CHILDREN[pid]


class LocalEndpoints(LocalAccess):
    """The local endpoints of one state folder: what :class:`LocalAccess` reads, and their lifecycle.

    Args:
        state_dir: The state folder (default ``$ENDPOINTS_STATE_DIR``, else ``./.endpoints``).
    """

    # ------------------------------------------------------------------------------------------ lifecycle
    def up(
        self,
        folder: str | Path,
        *,
        endpoint_file: str = "endpoint.yml",
        port: int | None = 0,
        timeout_s: float = 120.0,
        say: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Start (or reconcile) an endpoint folder; return once every deployment is ready.

        Args:
            folder: Endpoint folder (``endpoint.yml`` + ``deployments/``).
            endpoint_file: Endpoint file in it (default ``endpoint.yml``).
            port: Router port (default 0: a free one; None: the last one, else 8765).
            timeout_s: Seconds to wait for readiness (default 120).
            say: Where progress lines go (default: nowhere).

        Returns:
            The endpoint's summary (as ``endpoints local up --json``).

        Raises:
            EndpointError: invalid spec, or a deployment did not start (its log's tail in the message).
        """
        from endpoints.errors import SpecError
        from endpoints.local.supervisor import LocalError, Supervisor
        from endpoints.project import load_endpoint_project

        try:
            project = load_endpoint_project(Path(folder), endpoint_file)
            supervisor = Supervisor(project, self.root, say=say)
        except (SpecError, LocalError) as e:
            raise EndpointError(spec_message(e)) from e
        try:
            state = supervisor.up(port, foreground=False, ready_timeout_s=timeout_s)
        except LocalError as e:
            raise EndpointError(spec_message(e)) from e
        finally:
            _CHILDREN.update({p.pid: p for p in supervisor.children.values()})
            _reap_children()
        return endpoint_summary(state)

    def down(self, name: str | None = None) -> int:
        """Stop one endpoint (default: every one); keys and logs stay. Returns how many processes stopped."""
        from endpoints.local.supervisor import stop_endpoint

        names = [self.resolve_name(name)] if name is not None else self.names()
        stopped = sum(stop_endpoint(StateDir(self.root, n)) for n in names)
        _reap_children()
        return stopped

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """Each endpoint's summary with ``router_state`` and per-deployment ``state`` (ready, starting, crashed)."""
        names = [self.resolve_name(name)] if name is not None else self.names()
        report = []
        for n in names:
            _, state = self._state(n)
            rows = []
            for dname, record in state.deployments.items():
                alive = record.alive()
                rows.append(
                    {
                        "deployment": dname,
                        "state": ("ready" if _ready(record.port) else "starting") if alive else "crashed",
                        "pid": record.pid,
                        "port": record.port,
                        "traffic": state.traffic.get(dname, 0),
                        "mirror": state.mirror_traffic.get(dname, 0),
                    }
                )
            router_state = "stopped"
            if state.router is not None:
                router_state = "running" if state.router.alive() else "crashed"
            report.append({**endpoint_summary(state), "router_state": router_state, "deployment_states": rows})
        return report

    # ------------------------------------------------------------------------------------------ access
    def client(self, name: str, **kwargs: Any) -> OnlineEndpointClient:
        """An :class:`~endpoints.sdk.online.OnlineEndpointClient` for a running local endpoint."""
        return OnlineEndpointClient.local(name, state_dir=self.root, **kwargs)

    def regenerate_keys(self, name: str, which: KeyName, *, timeout_s: float = KEY_PICKUP_TIMEOUT_S) -> dict[str, str]:
        """Replace one key; the other keeps working throughout. Returns the new keys once every serving process
        accepts the new one (they re-read the key files within a second).

        Args:
            name: Endpoint name.
            which: ``primary`` or ``secondary``.
            timeout_s: How long to wait for the running deployments to accept the new key (default 10 s).

        Raises:
            EndpointError: unknown key name, not a key-auth endpoint, or the new key not accepted in time.
        """
        if which not in KEY_FILES:
            raise EndpointError(f"key: got {which!r}; choose primary or secondary")
        dir_, state = self._state(name)
        if state.auth_mode != "key":
            raise EndpointError(f"endpoint {state.endpoint} uses {state.auth_mode}; only key auth has keys to rotate")
        new = secrets.token_urlsafe(32)
        # Atomic rename: a serving process reads either the old or the new key, never half a file; the other
        # key's file is not touched, so a caller using it never sees a 401.
        write_private(dir_.keys_dir / which, new)
        self._wait_accepted(state, new, timeout_s)
        return read_keys(dir_.keys_dir)

    def _wait_accepted(self, state: EndpointState, key: str, timeout_s: float) -> None:
        # GET /swagger.json is authenticated and runs no scoring code: 401 until a process reads the new key.
        ports = [r.port for r in state.deployments.values() if r.alive()]
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0, headers={"authorization": f"Bearer {key}"}) as client:
            while ports:
                waiting = []
                for port in ports:
                    try:
                        code = client.get(f"http://127.0.0.1:{port}/swagger.json").status_code
                    except httpx.HTTPError:
                        code = 0
                    if code in (0, 401):
                        waiting.append(port)
                ports = waiting
                if ports and time.monotonic() > deadline:
                    raise EndpointError(
                        f"endpoint {state.endpoint}: the new key is written but deployments on ports {ports} did not "
                        f"accept it within {timeout_s:g} s; see `endpoints logs {state.endpoint}`"
                    )
                if ports:
                    time.sleep(0.1)

    def logs(self, name: str, deployment: str | None = None, tail: int | None = 50) -> dict[str, str]:
        """Last ``tail`` lines (None: all) of each process log (deployments and ``router``), or one of them.

        Raises:
            EndpointError: no log for ``deployment``.
        """
        files = self.log_files(name)
        if deployment is not None:
            if deployment not in files:
                raise EndpointError(f"no log for {deployment!r} (logs: {', '.join(files) or 'none'})")
            files = {deployment: files[deployment]}
        out = {}
        for n, path in files.items():
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            out[n] = "\n".join(lines[-tail:] if tail else lines)
        return out

    def follow_logs(
        self, name: str, deployment: str | None = None, *, stop: Callable[[], bool] | None = None, poll_s: float = 0.5
    ) -> Iterator[tuple[str, str]]:
        """An iterator of ``(process, line)`` for every line appended to the logs from this call on, until ``stop()``.

        Raises:
            EndpointError: no log for ``deployment``.
        """
        files = self.log_files(name)
        if deployment is not None:
            if deployment not in files:
                raise EndpointError(f"no log for {deployment!r} (logs: {', '.join(files) or 'none'})")
            files = {deployment: files[deployment]}
        offsets = {n: p.stat().st_size for n, p in files.items()}  # now, not at the first next()

        def lines() -> Iterator[tuple[str, str]]:
            while stop is None or not stop():
                time.sleep(poll_s)
                for n, path in files.items():
                    with path.open("rb") as f:
                        f.seek(offsets[n])
                        chunk = f.read()
                        offsets[n] = f.tell()
                    for line in chunk.decode(errors="replace").splitlines():
                        yield n, line

        return lines()

    def log_files(self, name: str) -> dict[str, Path]:
        """Log file per process name (deployments, ``router``)."""
        dir_, _ = self._state(name)
        if not dir_.logs_dir.is_dir():
            return {}
        return {p.stem: p for p in sorted(dir_.logs_dir.glob("*.log"))}
