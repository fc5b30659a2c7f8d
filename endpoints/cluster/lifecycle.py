"""Start, inspect and stop the throwaway control plane; every process is recorded by pid before anything can fail.

``up`` checks first and starts nothing when a binary or a CRD file of the toolchain is missing, a port is taken or a
cluster already runs from the state directory. Then, in order: certificates and kubeconfigs
(:mod:`endpoints.cluster.pki`), etcd, kube-apiserver, the objects of :mod:`endpoints.cluster.objects` (with the
Prometheus Operator's CRDs from the toolchain's ``crds/``), kube-controller-manager, the scheduler (kube-scheduler
when the toolchain has it, else :mod:`endpoints.cluster.binder`) and kwok; it returns once the fake nodes are Ready
and the controller-manager works. Each process is started in its own session with its output in
``<state>/logs/<name>.log``, and written to ``<state>/state.json`` (pid and start time, so a reused pid is never
signalled) the moment it exists. When a later step fails, everything already started is stopped by pid before the
error is raised.

``down`` stops each recorded process (SIGTERM, then SIGKILL after a grace period), waits until it is gone and removes
the cluster's data (etcd, keys); logs stay. ``status`` only reads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from endpoints.cluster import ClusterError, kwok_stages, objects, pki
from endpoints.cluster.apply import apply, crd_established, dynamic_client, resource_for, wait_for

TOOLCHAIN_ENV = "ENDPOINTS_TOOLCHAIN_DIR"
DEFAULT_STATE_DIR = Path(".endpoints") / "cluster"
STATE_FILE = "state.json"
ADMIN_KUBECONFIG = "admin.kubeconfig"
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kwok")
SCHEDULER_BINARY = "kube-scheduler"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
POD_CIDR = "10.244.0.0/16"
STOP_GRACE_S = 15.0
# Files and folders `up` owns inside the state directory (wiped by `up`, data removed by `down`).
_DATA = ("pki", "etcd", "kubeconfigs", "kwok.yaml", ADMIN_KUBECONFIG, f"{Path(ADMIN_KUBECONFIG).stem}.discovery.json")


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the cluster (all on 127.0.0.1)."""

    apiserver: int = 6443
    etcd: int = 2379
    etcd_peer: int = 2380
    kwok: int = 10247

    def named(self) -> dict[str, int]:
        """``{"kube-apiserver": 6443, ...}``: what listens where (for the taken-port message)."""
        return {"kube-apiserver": self.apiserver, "etcd": self.etcd, "etcd peer": self.etcd_peer, "kwok": self.kwok}


@dataclass
class ProcessRecord:
    """One started process: enough to find it again, and to tell it from a later process with the same pid."""

    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: str


@dataclass
class ClusterState:
    """``<state>/state.json``: the running cluster as ``up`` left it."""

    state_dir: str
    server: str
    kubeconfig: str
    ports: dict[str, int]
    scheduler: str
    processes: list[ProcessRecord] = field(default_factory=list)

    def save(self) -> None:
        """Write atomically (a reader never sees half a file)."""
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState | None:
        """The recorded cluster, or None when the directory holds none.

        Raises:
            ClusterError: the file is there but unreadable.
        """
        path = state_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
            return cls(**data)
        except (ValueError, TypeError) as e:
            raise ClusterError(f"{path}: not a cluster state file ({e}); remove it if no cluster runs") from e


def toolchain_dir(repo_root: Path | None = None) -> Path:
    """``$ENDPOINTS_TOOLCHAIN_DIR``, else ``<repo_root>/.toolchain`` (default: the current directory's)."""
    env = os.environ.get(TOOLCHAIN_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return ((repo_root or Path.cwd()) / ".toolchain").resolve()


# --------------------------------------------------------------------------------------------------- processes


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None if gone.

    A zombie (exited, not yet reaped) counts as gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs (same pid *and* same start time)."""
    return _start_ticks(record.pid) == record.start_ticks


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def spawn(name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> ProcessRecord:
    """Start ``argv`` in a new session (no terminal signals reach it), output appended to ``<log_dir>/<name>.log``."""
    log = log_dir / f"{name}.log"
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    ticks = _start_ticks(pid)
    return ProcessRecord(name, pid, ticks if ticks is not None else -1, argv, str(log))


def stop(record: ProcessRecord, grace_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM the process (its session: its own children too), SIGKILL after ``grace_s``; wait until it is gone.

    Returns:
        Whether it was still running.
    """
    if not alive(record):
        _reap(record.pid)
        return False
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, sig)  # setsid made it a session and group leader: pgid == pid
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(record.pid)
            if not alive(record):
                return True
            time.sleep(0.1)
    raise ClusterError(f"{record.name} (pid {record.pid}) did not stop after SIGKILL")


def log_tail(record: ProcessRecord, lines: int = 25) -> str:
    """The last lines of a process's log (for error messages)."""
    try:
        text = Path(record.log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------- preflight


def missing_binaries(bin_dir: Path) -> list[str]:
    """Required binaries absent from ``bin_dir`` (or not executable)."""
    return [b for b in REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]


def taken_ports(ports: Ports) -> list[str]:
    """``"127.0.0.1:6443 (kube-apiserver)"`` for each port something already listens on (or a port given twice)."""
    taken = []
    seen: dict[int, str] = {}
    for what, port in ports.named().items():
        if port in seen:
            taken.append(f"127.0.0.1:{port} ({what}: also given for {seen[port]})")
            continue
        seen[port] = what
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"127.0.0.1:{port} ({what})")
    return taken


def preflight(
    state_dir: Path, bin_dir: Path, ports: Ports, crd_dir: Path | None = None, kwok_crd_dir: Path | None = None
) -> None:
    """Everything ``up`` checks before it starts anything.

    Raises:
        ClusterError: a cluster runs from ``state_dir``, a binary or a toolchain CRD file (in ``crd_dir`` and
            ``kwok_crd_dir``, default ``crds/`` and ``kwok-crds/`` beside ``bin_dir``) is missing, or a port is taken.
    """
    existing = ClusterState.load(state_dir)
    if existing is not None:
        running = [f"{p.name} (pid {p.pid})" for p in existing.processes if alive(p)]
        if running:
            raise ClusterError(
                f"{state_dir}: a cluster already runs from here ({', '.join(running)}); "
                f"`endpoints cluster down --state-dir {state_dir}` first"
            )
    missing = missing_binaries(bin_dir)
    if missing:
        raise ClusterError(
            f"{bin_dir}: missing {', '.join(missing)}; build the toolchain (scripts/toolchain.sh) or point "
            f"{TOOLCHAIN_ENV} at a folder whose bin/ holds them. Nothing was started."
        )
    crd_dir = crd_dir or bin_dir.parent / "crds"
    kwok_crd_dir = kwok_crd_dir or bin_dir.parent / "kwok-crds"
    for folder, missing_in, what, command in (
        (
            crd_dir,
            objects.missing_toolchain_crds,
            "the Prometheus Operator's CRDs, for stacks with ml-endpoints:monitoring",
            objects.TOOLCHAIN_CRD_COMMAND,
        ),
        (kwok_crd_dir, objects.missing_kwok_crds, "kwok's Logs CRDs, for pod logs", objects.KWOK_CRD_COMMAND),
    ):
        missing_crds = missing_in(folder)
        if missing_crds:
            raise ClusterError(
                f"{folder}: missing {', '.join(missing_crds)} ({what}); install them with `{command}`. Nothing was"
                " started."
            )
    taken = taken_ports(ports)
    if taken:
        raise ClusterError(
            f"port taken: {'; '.join(taken)}; stop what listens there or pick other ports "
            "(--apiserver-port, --etcd-port, --kwok-port). Nothing was started."
        )


# ------------------------------------------------------------------------------------------------------ up


def _argv(bin_dir: Path, state_dir: Path, keys: pki.Pki, ports: Ports, kubeconfigs: Path) -> dict[str, list[str]]:
    etcd_url = f"https://127.0.0.1:{ports.etcd}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    cm = str(kubeconfigs / "controller-manager.kubeconfig")
    sched = str(kubeconfigs / "scheduler.kubeconfig")
    return {
        "etcd": [
            str(bin_dir / "etcd"),
            "--name=ml-endpoints",
            f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",  # one member on loopback: peers never talk
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=ml-endpoints={peer_url}",
            "--initial-cluster-state=new",
            f"--cert-file={keys.cert('etcd')}",
            f"--key-file={keys.key('etcd')}",
            f"--trusted-ca-file={keys.ca_cert}",
            "--client-cert-auth",
            "--unsafe-no-fsync",  # throwaway data: no fsync keeps a slow disk from stalling the API server
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--etcd-cafile={keys.ca_cert}",
            f"--etcd-certfile={keys.cert('apiserver-etcd-client')}",
            f"--etcd-keyfile={keys.key('apiserver-etcd-client')}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--tls-cert-file={keys.cert('apiserver')}",
            f"--tls-private-key-file={keys.key('apiserver')}",
            f"--client-ca-file={keys.ca_cert}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={keys.sa_pub}",
            f"--service-account-signing-key-file={keys.sa_key}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",  # on top of the default set (PodSecurity included)
            f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
            # The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints refuse; nothing in the
            # cluster calls the API server through the Service (no pod runs).
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            f"--cert-dir={state_dir / 'pki' / 'apiserver-generated'}",
            # Pod logs: the API server dials a node's kubelet endpoint (kwok's server, InternalIP 127.0.0.1), checks
            # its certificate against the cluster's CA and presents a client certificate of its own.
            f"--kubelet-client-certificate={keys.cert(pki.APISERVER_KUBELET_CLIENT)}",
            f"--kubelet-client-key={keys.key(pki.APISERVER_KUBELET_CLIENT)}",
            f"--kubelet-certificate-authority={keys.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ],
        "kube-controller-manager": [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={cm}",
            f"--authentication-kubeconfig={cm}",
            f"--authorization-kubeconfig={cm}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",  # no health endpoint needed: `up` waits on what the controllers do
            "--controllers=*",  # every default controller: deployment, replicaset, job, endpoints, GC, PV binder...
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={keys.sa_key}",
            f"--root-ca-file={keys.ca_cert}",
            f"--cluster-signing-cert-file={keys.ca_cert}",
            f"--cluster-signing-key-file={keys.ca_key}",
            f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
            "--leader-elect=false",
        ],
        SCHEDULER_BINARY: [
            str(bin_dir / SCHEDULER_BINARY),
            f"--kubeconfig={sched}",
            f"--authentication-kubeconfig={sched}",
            f"--authorization-kubeconfig={sched}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
        ],
        "binder": [
            sys.executable,
            "-m",
            "endpoints.cluster.binder",
            f"--kubeconfig={kubeconfigs / 'binder.kubeconfig'}",
        ],
        "kwok": [
            str(bin_dir / "kwok"),
            f"--kubeconfig={kubeconfigs / 'kwok.kubeconfig'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={objects.KWOK_ANNOTATION[0]}={objects.KWOK_ANNOTATION[1]}",
            f"--server-address=127.0.0.1:{ports.kwok}",
            # The fake nodes' kubelet endpoint (kwok_stages' node-ready): this server, on TLS the API server trusts.
            "--node-ip=127.0.0.1",
            f"--node-port={ports.kwok}",
            f"--tls-cert-file={keys.cert(pki.KWOK_SERVING)}",
            f"--tls-private-key-file={keys.key(pki.KWOK_SERVING)}",
            # Pod logs come from the files that Logs/ClusterLogs objects name (docs/cluster.md).
            f"--enable-crds={','.join(objects.KWOK_CRD_KINDS)}",
            f"--cidr={POD_CIDR}",
            f"--config={state_dir / 'kwok.yaml'}",
        ],
    }


_CLIENTS = (
    ("admin", pki.ADMIN),
    ("controller-manager", pki.CONTROLLER_MANAGER),
    ("scheduler", pki.SCHEDULER),
    ("kwok", pki.KWOK),
    ("binder", pki.BINDER),
)


def _wipe(state_dir: Path) -> None:
    for name in _DATA:
        path = state_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _get(url: str, keys: pki.Pki, client: str, timeout_s: float = 5.0) -> Any:
    """GET over TLS trusting only the cluster's CA, authenticated with the client certificate ``client``."""
    import ssl

    import httpx

    ctx = ssl.create_default_context(cafile=str(keys.ca_cert))
    ctx.load_cert_chain(str(keys.cert(client)), str(keys.key(client)))
    return httpx.get(url, verify=ctx, timeout=timeout_s)


def _etcd_healthy(keys: pki.Pki, port: int) -> bool:
    r = _get(f"https://127.0.0.1:{port}/health", keys, "apiserver-etcd-client")
    return r.status_code == 200 and r.json().get("health") == "true"


def _apiserver_ready(keys: pki.Pki, port: int) -> bool:
    return _get(f"https://127.0.0.1:{port}/readyz", keys, "admin").status_code == 200


def _nodes_ready(client: Any, names: set[str]) -> bool:
    nodes = client.resources.get(api_version="v1", kind="Node").get().to_dict()["items"]
    ready = {
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions") or [])
    }
    return names <= ready


def _default_service_account(client: Any) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        client.resources.get(api_version="v1", kind="ServiceAccount").get(name="default", namespace="default")
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def _watching(record: ProcessRecord, check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, failing at once (with the log) when the process it waits for has exited."""

    def run() -> bool:
        if not alive(record):
            raise ClusterError(f"{record.name} exited while starting; its log ({record.log}) ends:\n{log_tail(record)}")
        return check()

    return run


@contextlib.contextmanager
def _stop_all_on_error(state: ClusterState) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for record in reversed(state.processes):
            with contextlib.suppress(Exception):
                stop(record, grace_s=5.0)
        state.processes = []
        state.save()
        raise


def up(
    state_dir: Path = DEFAULT_STATE_DIR,
    bin_dir: Path | None = None,
    ports: Ports | None = None,
    timeout_s: float = 300.0,
    progress: Callable[[str], None] = lambda _: None,
    crd_dir: Path | None = None,
    kwok_crd_dir: Path | None = None,
) -> ClusterState:
    """Start the cluster; return once the fake nodes are Ready.

    Args:
        state_dir: Folder for certificates, kubeconfigs, etcd's data, logs and ``state.json`` (created).
        bin_dir: Folder of the binaries (default ``toolchain_dir()/bin``).
        crd_dir: Folder of the Prometheus Operator's CRD files (default ``crds/`` beside ``bin_dir``).
        kwok_crd_dir: Folder of kwok's Logs CRD files (default ``kwok-crds/`` beside ``bin_dir``).
        ports: Loopback ports (default :class:`Ports`).
        timeout_s: Longest wait for each component to be ready (default 300 s: a busy two-core machine).
        progress: Called with a line per step.

    Raises:
        ClusterError: a check failed (nothing started), or a component did not come up (everything stopped).
    """
    state_dir = state_dir.resolve()
    bin_dir = bin_dir or toolchain_dir() / "bin"
    crd_dir = (crd_dir or bin_dir.parent / "crds").resolve()  # beside bin/ as given (bin/ may be a link)
    kwok_crd_dir = (kwok_crd_dir or bin_dir.parent / "kwok-crds").resolve()
    bin_dir = bin_dir.resolve()
    ports = ports or Ports()
    state_dir.mkdir(parents=True, exist_ok=True)
    preflight(state_dir, bin_dir, ports, crd_dir, kwok_crd_dir)

    _wipe(state_dir)
    for sub in ("logs", "kubeconfigs"):
        (state_dir / sub).mkdir(exist_ok=True)
    (state_dir / "kubeconfigs").chmod(0o700)
    keys = pki.generate(state_dir / "pki", _CLIENTS)
    server = f"https://127.0.0.1:{ports.apiserver}"
    kubeconfigs = state_dir / "kubeconfigs"
    admin_kubeconfig = state_dir / ADMIN_KUBECONFIG
    pki.write_kubeconfig(admin_kubeconfig, keys, "admin", server, pki.ADMIN.user)
    for stem, identity in _CLIENTS[1:]:
        pki.write_kubeconfig(kubeconfigs / f"{stem}.kubeconfig", keys, stem, server, identity.user)
    scheduler = SCHEDULER_BINARY if os.access(bin_dir / SCHEDULER_BINARY, os.X_OK) else "binder"
    state = ClusterState(str(state_dir), server, str(admin_kubeconfig), asdict(ports), scheduler)
    state.save()
    (state_dir / "kwok.yaml").write_text(kwok_stages.config_yaml(), encoding="utf-8")
    argv = _argv(bin_dir, state_dir, keys, ports, kubeconfigs)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    log_dir = state_dir / "logs"

    def start(name: str) -> ProcessRecord:
        record = spawn(name, argv[name], log_dir, env)
        state.processes.append(record)
        state.save()
        return record

    with _stop_all_on_error(state):
        progress(f"etcd on 127.0.0.1:{ports.etcd}")
        etcd = start("etcd")
        wait_for("etcd /health", _watching(etcd, lambda: _etcd_healthy(keys, ports.etcd)), timeout_s)
        progress(f"kube-apiserver on {server}")
        apiserver = start("kube-apiserver")
        wait_for(
            "kube-apiserver /readyz", _watching(apiserver, lambda: _apiserver_ready(keys, ports.apiserver)), timeout_s
        )
        client = dynamic_client(admin_kubeconfig)
        progress("CRDs (Gateway API, Kueue, KEDA, Prometheus Operator, kwok's Logs), fake nodes, gateways, volumes")
        boot = objects.bootstrap_objects(pki.KWOK.user, pki.BINDER.user, crd_dir, kwok_crd_dir)
        for obj in boot:
            if obj["kind"] == "Gateway":  # its CRD must be served first
                for crd in (o for o in boot if o["kind"] == "CustomResourceDefinition"):
                    name = crd["metadata"]["name"]
                    wait_for(f"CRD {name}", functools.partial(crd_established, client, name), timeout_s)
            if obj["kind"] == "Node":
                # A plain create: it keeps the status (capacity) a kubelet would register with; an apply would
                # drop it (status is reset on the main resource).
                client.create(resource_for(client, obj), body=obj)
            else:
                apply(client, obj)
        progress("kube-controller-manager, " + scheduler + ", kwok")
        cm = start("kube-controller-manager")
        start(scheduler)
        kwok = start("kwok")
        nodes = {o["metadata"]["name"] for o in boot if o["kind"] == "Node"}
        wait_for("fake nodes Ready (kwok)", _watching(kwok, lambda: _nodes_ready(client, nodes)), timeout_s)
        sa_ready = _watching(cm, lambda: _default_service_account(client))
        wait_for("default service account (controller-manager)", sa_ready, timeout_s)
        for record in state.processes:
            if not alive(record):
                raise ClusterError(f"{record.name} exited while starting; its log ends:\n{log_tail(record)}")
    return state


# --------------------------------------------------------------------------------------------- status, down


@dataclass
class Status:
    """What ``status`` found."""

    state: ClusterState | None
    running: dict[str, bool]
    ready: bool | None
    nodes: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "server": self.state.server if self.state else None,
            "kubeconfig": self.state.kubeconfig if self.state else None,
            "scheduler": self.state.scheduler if self.state else None,
            "processes": {
                p.name: {"pid": p.pid, "running": self.running[p.name], "log": p.log}
                for p in (self.state.processes if self.state else [])
            },
            "apiserver_ready": self.ready,
            "nodes": self.nodes,
        }


def status(state_dir: Path = DEFAULT_STATE_DIR) -> Status:
    """Read the state file, check each process by pid and ask the API server; writes nothing."""
    state = ClusterState.load(state_dir.resolve())
    if state is None:
        return Status(None, {}, None, {})
    running = {p.name: alive(p) for p in state.processes}
    ready: bool | None = None
    nodes: dict[str, bool] = {}
    if running.get("kube-apiserver"):
        keys = pki.Pki(Path(state.state_dir) / "pki")
        try:
            ready = _apiserver_ready(keys, state.ports["apiserver"])
        except Exception:
            ready = False
        if ready:
            r = _get(f"{state.server}/api/v1/nodes", keys, "admin", timeout_s=10)
            for n in r.json().get("items", []):
                conds = (n.get("status") or {}).get("conditions") or []
                nodes[n["metadata"]["name"]] = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    return Status(state, running, ready, nodes)


def down(state_dir: Path = DEFAULT_STATE_DIR, progress: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop every recorded process by pid (last started first) and remove the cluster's data; logs stay.

    Returns:
        The names of the processes that were still running.

    Raises:
        ClusterError: no cluster state in ``state_dir``.
    """
    state_dir = state_dir.resolve()
    state = ClusterState.load(state_dir)
    if state is None:
        raise ClusterError(f"{state_dir}: no cluster here (no {STATE_FILE}); nothing to stop")
    stopped = []
    for record in reversed(state.processes):
        if stop(record):
            stopped.append(record.name)
            progress(f"stopped {record.name} (pid {record.pid})")
    _wipe(state_dir)
    (state_dir / STATE_FILE).unlink()
    return stopped
