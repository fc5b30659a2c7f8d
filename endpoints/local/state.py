"""The local state folder (``.endpoints/`` under the project, git-ignored): ports, pids, keys, logs.

Layout (folders 0700, files 0600 — keys never leave it)::

    .endpoints/<endpoint>/state.json        ports, pids (+ process start times), fingerprints, project folder
    .endpoints/<endpoint>/routes.json       the router's config (re-read on SIGHUP)
    .endpoints/<endpoint>/keys/primary      key auth, generated on first `up` (secrets module)
    .endpoints/<endpoint>/keys/secondary
    .endpoints/<endpoint>/keys/token-signing-key   aml_token signing key
    .endpoints/<endpoint>/logs/<deployment>.log, router.log
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract.keys import KEY_FILES, SIGNING_KEY_FILE

STATE_DIR_ENV = "ENDPOINTS_STATE_DIR"
DEFAULT_STATE_DIR = ".endpoints"
STATE_FILE = "state.json"
ROUTES_FILE = "routes.json"


def state_root(explicit: Path | None = None) -> Path:
    """The state folder: ``explicit``, else ``$ENDPOINTS_STATE_DIR``, else ``./.endpoints``."""
    if explicit is not None:
        return explicit
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else Path.cwd() / DEFAULT_STATE_DIR


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) owner-only (0700); tighten it if it already exists."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file owner-only (0600), atomically (temporary file + rename), so readers never see half of it."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_keys(keys_dir: Path) -> bool:
    """Generate the primary and secondary keys and the token signing key where missing.

    Returns:
        Whether any key was generated (first ``up``).
    """
    private_dir(keys_dir)
    made = False
    for name in (*KEY_FILES, SIGNING_KEY_FILE):
        path = keys_dir / name
        if not path.is_file():
            write_private(path, secrets.token_urlsafe(48 if name == SIGNING_KEY_FILE else 32))
            made = True
    return made


def read_keys(keys_dir: Path) -> dict[str, str]:
    """Primary and secondary key (Azure's ``get-credentials`` names: ``primaryKey``, ``secondaryKey``)."""
    return {f"{name}Key": (keys_dir / name).read_text().strip() for name in KEY_FILES}


# ------------------------------------------------------------------------------------------------ processes


def process_start_time(pid: int) -> int | None:
    """Start time of a live, non-zombie process in clock ticks since boot (``/proc/PID/stat`` field 22).

    Recorded next to each pid so that a pid reused by another program is never mistaken for ours.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return int(fields[19])


@dataclass
class ProcessRecord:
    """One process we started.

    Attributes:
        pid: Process id (also its process group: every process is started in its own session).
        start_time: ``process_start_time(pid)`` when started.
        port: TCP port it listens on (127.0.0.1).
        fingerprint: Hash of what it runs (spec, code, model); a change restarts it.
        metrics_port: The router's Prometheus ``/metrics`` port on 127.0.0.1 (None: none, or not the router).
    """

    pid: int
    start_time: int | None
    port: int
    fingerprint: str = ""
    metrics_port: int | None = None

    def alive(self) -> bool:
        """Whether the process still runs and is the one we started."""
        return self.start_time is not None and process_start_time(self.pid) == self.start_time

    def stop(self, timeout_s: float = 35.0) -> None:
        """SIGTERM its process group, wait up to ``timeout_s`` for it to drain and exit, then SIGKILL."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _reap(self.pid)
            if not self.alive():
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for _ in range(100):
            _reap(self.pid)
            if not self.alive():
                return
            time.sleep(0.02)


def _reap(pid: int) -> None:
    # Our own children (started by this CLI invocation) stay zombies until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class EndpointState:
    """What ``state.json`` holds for one endpoint.

    Attributes:
        endpoint: Endpoint name.
        project_dir: Absolute path of the endpoint folder.
        endpoint_file: Endpoint file inside it (default ``endpoint.yml``).
        auth_mode: ``key``, ``aml_token`` or ``aad_token``.
        router: The router process, once started.
        deployments: Serving process per deployment.
        traffic: Live traffic last applied.
        mirror_traffic: Mirror share last applied.
        starting: Serving processes started and not yet ready, recorded the moment they are spawned so that
            ``local down`` (or the next ``up``) finds them whatever happens to the starting CLI.
        scoring_paths: Scoring path per deployment (``/score``, a custom container's ``scoring_route.path``):
            the printed ``scoring_uri`` ends in the primary deployment's, as on the cluster.
        data_collectors: Where each deployment with a ``data_collector`` writes its JSON lines (folder or URL).
    """

    endpoint: str
    project_dir: str
    endpoint_file: str = "endpoint.yml"
    auth_mode: str = "key"
    router: ProcessRecord | None = None
    deployments: dict[str, ProcessRecord] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    mirror_traffic: dict[str, int] = field(default_factory=dict)
    starting: dict[str, ProcessRecord] = field(default_factory=dict)
    scoring_paths: dict[str, str] = field(default_factory=dict)
    data_collectors: dict[str, str] = field(default_factory=dict)

    def alive_records(self) -> list[ProcessRecord]:
        """Every recorded process still running: router, deployments and those starting."""
        records = [*([self.router] if self.router else []), *self.deployments.values(), *self.starting.values()]
        return [r for r in records if r.alive()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointState:
        """Inverse of ``to_dict``."""
        data = dict(data)
        router = data.pop("router", None)
        deployments = data.pop("deployments", {})
        starting = data.pop("starting", {})
        return cls(
            **data,
            router=ProcessRecord(**router) if router else None,
            deployments={k: ProcessRecord(**v) for k, v in deployments.items()},
            starting={k: ProcessRecord(**v) for k, v in starting.items()},
        )


class StateDir:
    """The state folder of one endpoint.

    Args:
        root: The ``.endpoints`` folder.
        endpoint: Endpoint name.
    """

    def __init__(self, root: Path, endpoint: str) -> None:
        self.root = root
        self.endpoint = endpoint
        self.path = root / endpoint

    @property
    def keys_dir(self) -> Path:
        """Folder of the keys (``ENDPOINTS_KEYS_DIR`` of the serving processes)."""
        return self.path / "keys"

    @property
    def logs_dir(self) -> Path:
        """Folder of the process logs."""
        return self.path / "logs"

    @property
    def routes_file(self) -> Path:
        """The router's config file."""
        return self.path / ROUTES_FILE

    def log_file(self, name: str) -> Path:
        """Log of a deployment, or of the router for ``router``."""
        return self.logs_dir / f"{name}.log"

    def prepare(self) -> None:
        """Create the folders owner-only."""
        private_dir(self.root)
        private_dir(self.path)
        private_dir(self.logs_dir)

    def load(self) -> EndpointState | None:
        """The saved state, or ``None`` when this endpoint was never started here."""
        path = self.path / STATE_FILE
        if not path.is_file():
            return None
        try:
            return EndpointState.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: unreadable state ({e}); stop its processes and delete the folder") from e

    def save(self, state: EndpointState) -> None:
        """Write ``state.json`` (0600)."""
        self.prepare()
        write_private(self.path / STATE_FILE, json.dumps(state.to_dict(), indent=2) + "\n")


def known_endpoints(root: Path) -> list[str]:
    """Names of the endpoints that have state under ``root``."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / STATE_FILE).is_file())
