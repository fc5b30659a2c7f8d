"""Local mode's supervisor: start, check, update and stop one endpoint's processes on this machine.

Every deployment runs as a serving process (``python -m serving``, the same server as in the cluster's
containers, with the same ``ENDPOINTS_*`` and Azure variables), and a router process
(``python -m endpoints.local.router``) applies the endpoint's traffic, mirror and pin rules on 127.0.0.1.

``up`` reconciles: a deployment whose spec, code or model changed is restarted alone (the new process is
started and ready before the router switches to it and the old one stops), one that crashed is started
again, and changed traffic/mirror rules reach the running router through its config file and ``SIGHUP``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from contract.keys import SIGNING_KEY_FILE
from contract.model_layout import image_model_dir, stage_local_model
from contract.serving import BATCH_ENV_VARS, DEFAULT_DRAIN_TIMEOUT_S, DataCollectorSettings, FrontendSettings
from endpoints.errors import SpecError
from endpoints.local.container import (
    ContainerEngineMissing,
    container_command,
    podman_command,
    proxy_command,
    stop_command,
)
from endpoints.local.router_config import RouterConfig
from endpoints.local.routing import RoutingTable
from endpoints.local.state import (
    EndpointState,
    ProcessRecord,
    StateDir,
    ensure_keys,
    private_dir,
    process_start_time,
    write_private,
)
from endpoints.project import EndpointProject
from endpoints.specs import OnlineDeployment, OnlineEndpoint

DEFAULT_PORT = 8765
DEFAULT_READY_TIMEOUT_S = 120.0
# Folder of the endpoint's state where deployments with a data_collector write their JSON lines, one per deployment.
DATA_COLLECTOR_FOLDER = "data-collector"
# Set by the platform from the spec; a deployment's environment_variables may not override them.
PLATFORM_PREFIXES = ("ENDPOINTS_", "AZUREML_", "AML_APP_ROOT", "SERVICE_NAME", "SERVICE_VERSION")
OIDC_VARS = ("ENDPOINTS_OIDC_ISSUER", "ENDPOINTS_OIDC_AUDIENCE", "ENDPOINTS_OIDC_JWKS_URL")


class LocalError(Exception):
    """A local endpoint could not be started, updated or found; the message says what to do."""


@dataclass
class Launch:
    """How one deployment's serving process is started.

    Attributes:
        name: Deployment name.
        command: argv, without the port (added at start).
        env: Complete environment of the process.
        cwd: Working folder (the code folder, ``AML_APP_ROOT``).
        fingerprint: Hash of the spec, the environment and the code/model files; changes restart it.
        timeout_s: How long the router waits for one answer.
    """

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    fingerprint: str
    timeout_s: float

    def argv(self, port: int) -> list[str]:
        """The command with its port."""
        return [*self.command, "--port", str(port)]


def drain_timeout_s(deployment: OnlineDeployment) -> int:
    """Drain time on SIGTERM: 30 s, or longer when one request may take longer (as in the cluster)."""
    rs = deployment.request_settings
    return FrontendSettings.drain_for(rs.request_timeout_ms, rs.max_queue_wait_ms)


def data_collector_settings(deployment: OnlineDeployment, state_path: Path, name: str) -> DataCollectorSettings | None:
    """Payload logging of a local deployment: a collection's own ``data.path``, else the folder
    ``<state>/<endpoint>/data-collector/<deployment>`` (None when nothing is collected)."""
    if deployment.data_collector is None:
        return None
    return deployment.data_collector.settings(str(state_path / DATA_COLLECTOR_FOLDER / name))


def _tree_signature(path: Path) -> list[tuple[str, int, int]]:
    if path.is_file():
        st = path.stat()
        return [(path.name, st.st_size, st.st_mtime_ns)]
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            st = p.stat()
            out.append((str(p.relative_to(path)), st.st_size, st.st_mtime_ns))
    return out


def plan_deployment(project: EndpointProject, name: str, keys_dir: Path, models_root: Path | None = None) -> Launch:
    """The serving process of one deployment: command, environment (``ENDPOINTS_*``, Azure's, the spec's).

    The model is laid out as Azure does (:func:`contract.model_layout.stage_local_model`): ``AZUREML_MODEL_DIR`` is
    ``<models_root>/<deployment>`` (default: ``models/`` beside ``keys_dir`` in the endpoint's state folder),
    holding the model under its base name (``model.path: ../models/alice`` -> ``$AZUREML_MODEL_DIR/alice``).

    Raises:
        LocalError: the deployment cannot run locally (model not a local path, custom container, ...).
    """
    endpoint = project.endpoint
    deployment = project.deployments[name]
    source = project.deployment_file(name)
    if not isinstance(endpoint, OnlineEndpoint) or not isinstance(deployment, OnlineDeployment):
        raise LocalError(f"{project.endpoint_file}: local mode runs online endpoints; this one is {endpoint.kind}")
    if deployment.is_triton:
        raise LocalError(
            f"{source}: model.type: got 'triton_model'; local mode has no Triton Inference Server (deploy it to a"
            " cluster, or run a Triton image as a custom container: environment.image + inference_config, with podman)"
        )
    model = deployment.model
    if isinstance(model, str):
        raise LocalError(f"{source}: model: got {model!r}; local mode needs a local model path")
    model_dir = project.local_path(name, model.path) if model is not None else None
    if model is not None and "://" in model.path:
        raise LocalError(f"{source}: model.path: got {model.path!r}; local mode needs a local model path")
    models_root = models_root if models_root is not None else keys_dir.parent / "models"

    rs = deployment.request_settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIXES) and k != "WORKER_COUNT"}
    oidc: dict[str, str] = {}
    if endpoint.auth_mode == "aad_token":
        missing = [v for v in OIDC_VARS if not os.environ.get(v)]
        if missing:
            raise LocalError(
                f"{project.endpoint_file}: auth_mode aad_token: set {', '.join(missing)} in the environment"
                " (the identity provider local mode checks tokens against)"
            )
        oidc = {v.removeprefix("ENDPOINTS_").lower(): os.environ[v] for v in OIDC_VARS}
    frontend = FrontendSettings.model_validate(
        {
            "auth_mode": endpoint.auth_mode,
            "keys_dir": keys_dir,
            "token_signing_key_file": keys_dir / SIGNING_KEY_FILE,
            "endpoint_name": endpoint.name,
            **oidc,
            "request_timeout_ms": rs.request_timeout_ms,
            "max_concurrent_requests": rs.max_concurrent_requests_per_instance,
            "max_queue_wait_ms": rs.max_queue_wait_ms,
            "drain_timeout_s": drain_timeout_s(deployment),
        }
    )
    ours: dict[str, str] = {
        **frontend.to_env(),
        "SERVICE_NAME": endpoint.name,
        "SERVICE_VERSION": deployment.name,
        "PYTHONUNBUFFERED": "1",
    }
    if deployment.is_custom_container:
        return _custom_container_launch(project, name, source, model_dir, env, ours)
    command = [sys.executable, "-m", "serving", "--host", "127.0.0.1"]
    code = deployment.code_configuration
    if code is not None:
        code_dir = project.local_path(name, code.code)
        ours["AML_APP_ROOT"] = str(code_dir)
        ours["AZUREML_SOURCE_DIRECTORY"] = str(code_dir)
        ours["AZUREML_ENTRY_SCRIPT"] = str(code_dir / code.scoring_script)
        command += ["--entry-script", str(code_dir / code.scoring_script)]
        cwd = code_dir
    else:
        cwd = model_dir if model_dir is not None and model_dir.is_dir() else project.root.resolve()
        ours["AML_APP_ROOT"] = str(cwd)
    if model is not None and model_dir is not None:
        # Azure's layout (contract.model_layout): the model under its own name inside AZUREML_MODEL_DIR, here a
        # folder of the endpoint's state holding one link to the model.
        try:
            azureml_model_dir = stage_local_model(model_dir, models_root / name)
        except FileNotFoundError as e:
            raise LocalError(f"{source}: model.path: got {model.path!r}; no such file or folder ({model_dir})") from e
        ours["AZUREML_MODEL_DIR"] = str(azureml_model_dir)
        command += ["--model-dir", str(azureml_model_dir)]
    ours.update(rs.batching_env())  # opt-in adaptive batching (serving.batching)
    collector = data_collector_settings(deployment, keys_dir.parent, name)
    if collector is not None:
        ours.update(collector.to_env())  # payload logging (serving.frontend.collector)
    for key, value in deployment.environment_variables.items():
        if key.startswith(PLATFORM_PREFIXES) and (key not in BATCH_ENV_VARS or key in ours):
            raise LocalError(
                f"{source}: environment_variables.{key}: set by the platform from the spec;"
                " change the corresponding spec field instead"
            )
        ours[key] = value
    ours.setdefault("WORKER_COUNT", "1")
    command += ["--workers", ours["WORKER_COUNT"]]
    env.update(ours)

    digest = hashlib.sha256()
    digest.update(deployment.model_dump_json(by_alias=True).encode())
    digest.update(json.dumps([command, sorted(ours.items())]).encode())
    for folder in (cwd if code is not None else None, model_dir):
        if folder is not None and folder.exists():
            digest.update(json.dumps(_tree_signature(folder)).encode())
    return Launch(name, command, env, cwd, digest.hexdigest()[:16], frontend.upstream_timeout_s)


def _custom_container_launch(
    project: EndpointProject,
    name: str,
    source: Path,
    model_dir: Path | None,
    env: dict[str, str],
    ours: dict[str, str],
) -> Launch:
    """A custom container: the auth proxy, which runs the image under podman (endpoints/local/container.py)."""
    deployment = project.deployments[name]
    assert isinstance(deployment, OnlineDeployment)
    try:
        podman_command()
    except ContainerEngineMissing as e:
        raise LocalError(f"{source}: {e}") from None
    if model_dir is not None and not model_dir.exists():
        raise LocalError(f"{source}: model.path: no such file or folder ({model_dir})")
    container_env = dict(deployment.environment_variables)
    model = deployment.model
    if model is not None and not isinstance(model, str):
        container_env["AZUREML_MODEL_DIR"] = image_model_dir(model.name, model.version, deployment.model_mount_path)
    code = deployment.code_configuration
    code_dir = project.local_path(name, code.code) if code is not None else None
    container_name = f"endpoints-local-{project.endpoint.name}-{name}"
    upstream = container_command(deployment, container_name, model_dir, container_env, code_dir)
    command = proxy_command(deployment, upstream, stop_command(container_name))
    env.update(ours)
    digest = hashlib.sha256()
    digest.update(deployment.model_dump_json(by_alias=True).encode())
    digest.update(json.dumps([command, sorted(ours.items())]).encode())
    for folder in (model_dir, code_dir):
        if folder is not None:
            digest.update(json.dumps(_tree_signature(folder)).encode())
    rs = deployment.request_settings
    timeout_s = (rs.request_timeout_ms + rs.max_queue_wait_ms) / 1000 + 5
    return Launch(name, command, env, project.root.resolve(), digest.hexdigest()[:16], timeout_s)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    # Foreground mode: if the CLI is killed outright (SIGKILL), the kernel sends SIGTERM to its children so
    # that nothing is left behind. PR_SET_PDEATHSIG = 1 (Linux only; elsewhere Ctrl-C cleanup still applies).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


# The shell a spawned process waits in until it is recorded: one line on stdin releases it (`exec`, same pid and
# start time); end of file (the CLI died first, its end of the pipe closed) ends it before anything started.
_GATE = 'read -r go || exit 75; exec "$@" </dev/null'


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path, *, foreground: bool) -> subprocess.Popen[bytes]:
    """Start a process in its own session (so Ctrl-C reaches only the CLI, which then stops it cleanly), held at a
    gate until :func:`release`: the caller records it in the state first, so a CLI killed in between (SIGKILL: no
    cleanup of its own) leaves nothing running that `local down` would not find."""
    gate_read, gate_write = os.pipe()
    try:
        with log.open("ab") as out:
            os.chmod(log, 0o600)
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _GATE, "endpoints-start-gate", *argv],
                env=env,
                cwd=cwd,
                stdin=gate_read,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if foreground else None,  # the CLI runs no threads
            )
    except BaseException:
        os.close(gate_write)
        raise
    finally:
        os.close(gate_read)
    _gates[proc.pid] = gate_write
    return proc


_gates: dict[int, int] = {}


def release(proc: subprocess.Popen[bytes]) -> None:
    """Let a process :func:`spawn` holds start its program (call once it is recorded)."""
    gate = _gates.pop(proc.pid, None)
    if gate is not None:
        with contextlib.suppress(OSError):  # it may have died meanwhile: its stop is handled like any crash
            os.write(gate, b"go\n")
        os.close(gate)


def record_of(proc: subprocess.Popen[bytes], port: int, fingerprint: str = "") -> ProcessRecord:
    """The state record of a process just started."""
    return ProcessRecord(pid=proc.pid, start_time=process_start_time(proc.pid), port=port, fingerprint=fingerprint)


def log_tail(path: Path, lines: int = 15) -> str:
    """Last lines of a log (for error messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(
    waiting: dict[str, tuple[ProcessRecord, Path]],
    timeout_s: float,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Poll ``GET /ready`` of each process until all answer 200.

    Raises:
        LocalError: one exited (its log's tail in the message) or the timeout passed.
    """
    deadline = time.monotonic() + timeout_s
    pending = dict(waiting)
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for name, (record, log) in list(pending.items()):
                if not record.alive():
                    raise LocalError(f"deployment {name} exited during start; last lines of {log}:\n{log_tail(log)}")
                try:
                    ready = client.get(f"http://127.0.0.1:{record.port}/ready").status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    del pending[name]
                    if on_ready:
                        on_ready(name)
            if pending and time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                raise LocalError(f"deployment(s) {names} not ready within {timeout_s:g} s; see `endpoints local logs`")
            if pending:
                time.sleep(0.1)


def wait_listening(record: ProcessRecord, log: Path, timeout_s: float = 20.0) -> None:
    """Wait until the router accepts connections.

    Raises:
        LocalError: it exited or did not listen in time.
    """
    deadline = time.monotonic() + timeout_s
    while not port_in_use(record.port):
        if not record.alive():
            raise LocalError(f"the router exited during start; last lines of {log}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise LocalError(f"the router did not listen on port {record.port} within {timeout_s:g} s")
        time.sleep(0.05)


class Supervisor:
    """Runs one endpoint project locally.

    Args:
        project: The validated endpoint folder.
        root: The ``.endpoints`` state folder.
        say: Where progress lines go (default: nowhere).
    """

    def __init__(self, project: EndpointProject, root: Path, say: Callable[[str], None] | None = None) -> None:
        if not isinstance(project.endpoint, OnlineEndpoint):
            raise LocalError(f"{project.endpoint_file}: local mode runs online endpoints; this one is batch")
        self.project = project
        self.endpoint: OnlineEndpoint = project.endpoint
        self.dir = StateDir(root, project.endpoint.name)
        self.say = say or (lambda _line: None)
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def up(
        self, port: int | None = None, *, foreground: bool, ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    ) -> EndpointState:
        """Start what is missing, restart what changed or crashed, apply traffic; return the new state.

        Args:
            port: Router port (default: the port used last time, else 8765; 0 picks a free one).
            foreground: Children die with this process (``up`` without ``--detach``).
            ready_timeout_s: How long to wait for every deployment's ``/ready`` (default 120).
        """
        self.dir.prepare()
        old = self.dir.load()
        # Before anything is touched: a router that must (re)start needs its port free, or a healthy endpoint would
        # be stopped for a start that cannot succeed.
        self._check_router_port(old, port)
        if ensure_keys(self.dir.keys_dir):
            self.say(f"generated keys in {self.dir.keys_dir} (owner-only)")
        if any(getattr(d, "data_collector", None) is not None for d in self.project.deployments.values()):
            private_dir(self.dir.path / DATA_COLLECTOR_FOLDER)  # payloads may be personal data: owner-only
        state = EndpointState(
            endpoint=self.endpoint.name,
            project_dir=str(self.project.root.resolve()),
            endpoint_file=self.project.endpoint_file.name,
            auth_mode=self.endpoint.auth_mode,
            router=old.router if old else None,
            deployments=dict(old.deployments) if old else {},
            traffic=dict(old.traffic) if old else {},
            mirror_traffic=dict(old.mirror_traffic) if old else {},
            scoring_paths={
                n: d.scoring_path
                for n, d in sorted(self.project.deployments.items())
                if isinstance(d, OnlineDeployment)
            },
            data_collectors={
                n: collector.data_collector_path
                for n, d in sorted(self.project.deployments.items())
                if isinstance(d, OnlineDeployment)
                and (collector := data_collector_settings(d, self.dir.path, n)) is not None
            },
        )
        if (
            old is not None
            and old.project_dir != state.project_dir
            and any(r.alive() for r in [*old.deployments.values(), *([old.router] if old.router else [])])
        ):
            raise LocalError(
                f"endpoint {self.endpoint.name} is already running from {old.project_dir};"
                " run `endpoints local down` first"
            )
        launches = {name: plan_deployment(self.project, name, self.dir.keys_dir) for name in self.project.deployments}
        if old is not None:
            for name, record in old.starting.items():  # left by an `up` that was killed while they started
                self.say(f"stopping deployment {name} (pid {record.pid}) left starting by an interrupted start")
                record.stop(5)
        for name, spec in self.project.deployments.items():
            count = getattr(spec, "instance_count", 1)
            if count > 1 and (old is None or name not in old.deployments):
                self.say(
                    f"note: {name}: instance_count {count} runs as one local process (WORKER_COUNT sets its workers)"
                )

        # Start new/changed/crashed deployments next to the running ones; switch the router once they are ready.
        started: dict[str, ProcessRecord] = {}
        replaced: list[ProcessRecord] = []
        for name, launch in launches.items():
            current = state.deployments.get(name)
            if current is not None and current.alive() and current.fingerprint == launch.fingerprint:
                continue
            if current is not None and current.alive():
                self.say(f"deployment {name} changed: starting a new process")
                replaced.append(current)
            elif current is not None:
                self.say(f"deployment {name} is not running (crashed or stopped): starting it")
            else:
                self.say(f"starting deployment {name}")
            dport = free_port()
            log = self.dir.log_file(name)
            proc = spawn(launch.argv(dport), launch.env, launch.cwd, log, foreground=foreground)
            self.children[name] = proc
            started[name] = record_of(proc, dport, launch.fingerprint)
            state.starting = dict(started)
            self.dir.save(state)  # recorded before anything can fail: `local down` finds it
            release(proc)
        try:
            wait_ready(
                {n: (r, self.dir.log_file(n)) for n, r in started.items()},
                ready_timeout_s,
                on_ready=lambda n: self.say(f"deployment {n} ready on 127.0.0.1:{started[n].port}"),
            )
        except LocalError:
            for record in started.values():
                record.stop(5)
            state.starting = {}
            self.dir.save(state)
            raise
        state.deployments.update(started)
        state.starting = {}
        removed = [n for n in state.deployments if n not in launches]
        for name in removed:
            self.say(f"deployment {name} is gone from the project: stopping it")
            replaced.append(state.deployments.pop(name))

        self._apply_routes(state, launches)
        self._ensure_router(state, port, foreground=foreground)
        self.dir.save(state)
        for record in replaced:
            record.stop(DEFAULT_DRAIN_TIMEOUT_S + 5)
        return state

    def _apply_routes(self, state: EndpointState, launches: dict[str, Launch]) -> None:
        table = RoutingTable(
            endpoint=self.endpoint.name,
            deployments=tuple(state.deployments),
            traffic={k: v for k, v in self.endpoint.traffic.items() if k in state.deployments},
            mirror_traffic={k: v for k, v in self.endpoint.mirror_traffic.items() if k in state.deployments},
        )
        config = RouterConfig(
            table=table,
            upstreams={n: f"http://127.0.0.1:{r.port}" for n, r in state.deployments.items()},
            timeouts_s={n: launches[n].timeout_s for n in state.deployments if n in launches},
        )
        write_private(self.dir.routes_file, json.dumps(config.to_dict(), indent=2) + "\n")
        state.traffic = dict(table.traffic)
        state.mirror_traffic = dict(table.mirror_traffic)

    @staticmethod
    def _keeps_router(router: ProcessRecord | None, port: int | None) -> bool:
        return router is not None and router.alive() and (port is None or port in (0, router.port))

    def _check_router_port(self, old: EndpointState | None, port: int | None) -> None:
        """Refuse a router port in use by another process, before anything is started or stopped.

        Raises:
            LocalError: the port the router would (re)start on is taken.
        """
        router = old.router if old else None
        if self._keeps_router(router, port):
            return
        wanted = port if port is not None else (router.port if router else DEFAULT_PORT)
        if router is not None and router.alive() and wanted == router.port:
            return  # our own router holds it; it is restarted there
        if wanted != 0 and port_in_use(wanted):
            raise LocalError(
                f"port {wanted} is in use; choose another with --port (0 picks a free one); nothing was changed"
            )

    def _ensure_router(self, state: EndpointState, port: int | None, *, foreground: bool) -> None:
        router = state.router
        wanted = port if port is not None else (router.port if router else DEFAULT_PORT)
        if self._keeps_router(router, port):
            assert router is not None
            os.kill(router.pid, signal.SIGHUP)
            rules = f"traffic {state.traffic} mirror {state.mirror_traffic}"
            self.say(f"router on 127.0.0.1:{router.port} reloaded: {rules}")
            # The reload is asynchronous; give the signal handler a moment before callers send traffic.
            time.sleep(0.2)
            return
        if router is not None:
            router.stop(10)
        if wanted == 0:
            wanted = free_port()
        elif port_in_use(wanted):
            raise LocalError(f"port {wanted} is in use; choose another with --port (0 picks a free one)")
        log = self.dir.log_file("router")
        argv = [sys.executable, "-m", "endpoints.local.router", "--config", str(self.dir.routes_file)]
        metrics_port = free_port()
        argv += ["--host", "127.0.0.1", "--port", str(wanted), "--metrics-port", str(metrics_port)]
        proc = spawn(argv, dict(os.environ), self.project.root.resolve(), log, foreground=foreground)
        self.children["router"] = proc
        record = record_of(proc, wanted)
        record.metrics_port = metrics_port
        state.router = record
        self.dir.save(state)  # recorded before it can fail to listen: `local down` finds it
        release(proc)
        wait_listening(record, log)
        self.say(f"router listening on 127.0.0.1:{wanted} (metrics: http://127.0.0.1:{metrics_port}/metrics)")

    def watch(self, stop: Callable[[], bool], poll_s: float = 0.5) -> None:
        """Foreground mode: report and restart crashed processes until ``stop()`` is true."""
        while not stop():
            time.sleep(poll_s)
            state = self.dir.load()
            if state is None:
                return
            down = [n for n, r in state.deployments.items() if not r.alive()]
            if state.router is not None and not state.router.alive():
                down.append("router")
            if down and not stop():
                for name in down:
                    proc = self.children.get(name)
                    code = proc.poll() if proc is not None else None
                    self.say(f"{name} exited (status {code}); restarting it")
                try:
                    self.up(foreground=True)
                except LocalError as e:
                    self.say(f"restart failed: {e}")
                    time.sleep(2)


def stop_endpoint(dir_: StateDir, say: Callable[[str], None] | None = None) -> int:
    """Stop the router, then every deployment (each drains its in-flight requests); keep keys and logs.

    Returns:
        How many processes were stopped.
    """
    say = say or (lambda _line: None)
    state = dir_.load()
    if state is None:
        return 0
    stopped = 0
    records = ([("router", state.router)] if state.router else []) + list(state.deployments.items())
    records += list(state.starting.items())
    for name, record in records:
        if record.alive():
            record.stop(DEFAULT_DRAIN_TIMEOUT_S + 5)
            say(f"stopped {name} (pid {record.pid})")
            stopped += 1
    state.router = None
    state.deployments = {}
    state.starting = {}
    dir_.save(state)
    return stopped


def project_error(e: SpecError) -> LocalError:
    """A spec error as a local error (same text)."""
    return LocalError(str(e))


__all__ = ["DEFAULT_PORT", "LocalError", "StateDir", "Supervisor", "plan_deployment", "private_dir", "stop_endpoint"]
