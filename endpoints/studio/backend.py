"""The studio's one door to endpoint state: what the pages show and change, behind :class:`LocalBackend`.

Local mode today, through the SDK that ``endpoints local``, ``endpoints invoke`` and ``endpoints batch`` use
(:class:`~endpoints.sdk.LocalEndpoints`, :class:`~endpoints.sdk.OnlineEndpointClient`,
:class:`~endpoints.sdk.BatchEndpointClient`), so the studio and the CLI read and change endpoints one way; the
cluster backend (``--stack``, :mod:`endpoints.studio.cluster`) offers the same methods through
:class:`~endpoints.sdk.Workspace`.
Every method is synchronous (the app calls them in a thread), returns plain JSON-ready data, and raises
:class:`StudioError` with the HTTP status the app answers and a message that names what was wrong.

Secrets: keys leave this module only through :meth:`LocalBackend.keys` (the page's "reveal") and are never put
into any other answer or error text.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from endpoints.errors import SpecError
from endpoints.local.state import KEY_FILES, EndpointState, StateDir, known_endpoints
from endpoints.project import EndpointProject, load_endpoint_project
from endpoints.sdk.batch import DEFAULT_STATE_DIR, BatchEndpointClient
from endpoints.sdk.errors import EndpointError
from endpoints.sdk.local import LocalEndpoints
from endpoints.sdk.local_access import endpoint_urls
from endpoints.sdk.online import NO_RETRY, OnlineEndpointClient
from endpoints.studio.metrics import MetricsSampler

MAX_LOG_CHUNK = 256 * 1024
READY_TIMEOUT_S = 0.5


class StudioError(Exception):
    """A request the studio answers with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InvokeResult:
    """What a test request got back.

    Attributes:
        status: HTTP status.
        headers: Response headers (lower-case names).
        body: Response body as text (undecodable bytes replaced).
        latency_ms: Time from sending the request to the end of the answer, in the studio process.
    """

    status: int
    headers: dict[str, str]
    body: str
    latency_ms: float


def timed_invoke(
    client: Any, body: bytes, content_type: str, deployment: str | None, *, close: bool = False
) -> InvokeResult:
    """One Test-tab request through an SDK ``OnlineEndpointClient``, with its latency in ms; ``close`` closes the
    client afterwards (one made for this request only).

    Raises:
        StudioError: 502, no answer from the endpoint.
    """
    start = time.perf_counter()
    try:
        result = client.invoke(data=body, content_type=content_type, deployment=deployment)
    except EndpointError as e:
        raise StudioError(str(e), 502) from e
    finally:
        if close:
            client.close()
    latency = (time.perf_counter() - start) * 1000
    return InvokeResult(result.status, dict(result.headers), result.text, round(latency, 2))


def _set_weights(doc: Any, key: str, weights: dict[str, int]) -> None:
    """Set a weights map in a round-trip YAML document in place (keeping its comments); drop it when empty."""
    current = doc.get(key)
    if not weights and key != "traffic":
        if key in doc:
            del doc[key]
        return
    if current is None or not hasattr(current, "keys"):
        doc[key] = dict(weights)
        return
    for name in [n for n in current if n not in weights]:
        del current[name]
    for name, value in weights.items():
        current[name] = value


class LocalBackend:
    """Endpoints on this machine: online ones from the state folder, batch ones from their folders.

    Args:
        state_root: The ``.endpoints`` folder of ``endpoints local`` (online endpoints' state).
        batch_dirs: Batch endpoint folders to show (``endpoints studio --batch DIR``).
        batch_state_dir: Where local batch jobs keep their state (the ``--state-dir`` of ``endpoints batch``).
    """

    kind = "local"
    follow_poll_s = 0.5  # a log file's size, read again

    def __init__(
        self, state_root: Path, batch_dirs: list[Path] | None = None, batch_state_dir: Path | None = None
    ) -> None:
        self.state_root = state_root
        self.local = LocalEndpoints(state_root)
        self.batch_dirs = [Path(d) for d in batch_dirs or []]
        self.batch_state_dir = batch_state_dir or Path(DEFAULT_STATE_DIR)
        self._batch: dict[str, BatchEndpointClient] = {}
        self._batch_folders: dict[str, Path] = {}
        self._batch_auth: dict[str, str] = {}
        self._reconciling = threading.Lock()  # two traffic edits at once must not run two reconciles
        self._http = httpx.Client(timeout=READY_TIMEOUT_S)
        # Test requests: one SDK client per endpoint and scoring URI (keep-alive to its router; a new `local up` on
        # another port gets a new one).
        self._clients: dict[str, OnlineEndpointClient] = {}
        self._clients_lock = threading.Lock()
        for folder in self.batch_dirs:
            self._batch_backend_for(folder)

    def close(self) -> None:
        """Close the HTTP pools."""
        self._http.close()
        with self._clients_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        for batch in self._batch.values():
            batch.close()

    # ------------------------------------------------------------------------------------------- online
    def _state(self, name: str) -> tuple[StateDir, EndpointState]:
        if name not in known_endpoints(self.state_root):
            raise StudioError(f"no local endpoint named {name!r} in {self.state_root}", 404)
        dir_ = StateDir(self.state_root, name)
        state = dir_.load()
        assert state is not None
        return dir_, state

    def _project(self, state: EndpointState) -> EndpointProject | None:
        try:
            return load_endpoint_project(state.project_dir, state.endpoint_file)
        except SpecError:
            return None  # edited into an invalid state since `up`: show what runs, from state.json

    def _ready(self, port: int) -> bool:
        try:
            return self._http.get(f"http://127.0.0.1:{port}/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def _online_summary(self, state: EndpointState, deployment_states: dict[str, str]) -> dict[str, Any]:
        router_alive = state.router is not None and state.router.alive()
        if not state.deployments and not router_alive:
            overall = "Stopped"
        elif router_alive and all(s == "Ready" for s in deployment_states.values()):
            overall = "Running"
        elif any(s == "Crashed" for s in deployment_states.values()) or not router_alive:
            overall = "Degraded"
        else:
            overall = "Starting"
        return {
            "name": state.endpoint,
            "kind": "online",
            "state": overall,
            "auth_mode": state.auth_mode,
            **endpoint_urls(state),
            "deployment_count": len(state.deployments),
            "traffic": state.traffic,
            "mirror_traffic": state.mirror_traffic,
            "project_dir": state.project_dir,
        }

    def _deployment_states(self, state: EndpointState) -> dict[str, str]:
        return {
            n: ("Ready" if self._ready(r.port) else "Starting") if r.alive() else "Crashed"
            for n, r in state.deployments.items()
        }

    def list_endpoints(self) -> list[dict[str, Any]]:
        """Every online endpoint with local state and every batch endpoint given, online first."""
        out = []
        for name in known_endpoints(self.state_root):
            state = StateDir(self.state_root, name).load()
            if state is not None:
                out.append(self._online_summary(state, self._deployment_states(state)))
        for name, batch in sorted(self._batch.items()):
            out.append(self._batch_summary(name, batch))
        return out

    def endpoint(self, name: str) -> dict[str, Any]:
        """One online endpoint with its deployments (state, instances, image, instance type, model)."""
        _, state = self._state(name)
        project = self._project(state)
        states = self._deployment_states(state)
        names = list(dict.fromkeys([*(project.deployments if project else []), *state.deployments]))
        deployments = []
        for dname in names:
            spec = project.deployments.get(dname) if project else None
            record = state.deployments.get(dname)
            model = getattr(spec, "model", None)
            environment = getattr(spec, "environment", None)
            deployments.append(
                {
                    "name": dname,
                    "state": states.get(dname, "Stopped"),
                    "instance_count": getattr(spec, "instance_count", None),
                    "processes": 1 if record is not None and record.alive() else 0,
                    "instance_type": getattr(spec, "instance_type", None),
                    "image": getattr(environment, "image", None) if environment is not None else None,
                    "model": model if isinstance(model, str) or model is None else (model.path or model.name),
                    "port": record.port if record else None,
                    "traffic": state.traffic.get(dname, 0),
                    "mirror": state.mirror_traffic.get(dname, 0),
                }
            )
        return {
            **self._online_summary(state, states),
            "endpoint_file": str(Path(state.project_dir) / state.endpoint_file),
            "deployments": deployments,
        }

    def set_traffic(self, name: str, traffic: dict[str, int], mirror: dict[str, int]) -> dict[str, Any]:
        """Write new traffic/mirror rules into the endpoint file, then apply them as ``endpoints local update``.

        The endpoint file stays the source of truth (the next ``local up`` keeps the change); comments and key
        order survive (ruamel.yaml round trip). The new file is validated with the whole project before it
        replaces the old one, so a rejected change leaves nothing behind.

        Raises:
            StudioError: 400 with the spec's error text (sum not 0/100, unknown deployment, mirror rules).
        """
        with self._reconciling:
            return self._set_traffic(name, traffic, mirror)

    def _set_traffic(self, name: str, traffic: dict[str, int], mirror: dict[str, int]) -> dict[str, Any]:
        from ruamel.yaml import YAML

        from endpoints.local.supervisor import LocalError, Supervisor

        _, state = self._state(name)
        path = Path(state.project_dir) / state.endpoint_file
        yaml = YAML()  # round trip
        try:
            doc = yaml.load(path.read_text())
        except (OSError, ValueError) as e:
            raise StudioError(f"{path}: cannot read the endpoint file: {e}", 409) from e
        _set_weights(doc, "traffic", traffic)
        _set_weights(doc, "mirror_traffic", {k: v for k, v in mirror.items() if v > 0})
        tmp = path.with_name(f".{path.name}.studio-{os.getpid()}.yml")
        try:
            with tmp.open("w") as f:
                yaml.dump(doc, f)
            try:
                load_endpoint_project(state.project_dir, tmp.name)
            except SpecError as e:
                raise StudioError(str(e).replace(str(tmp), str(path)).replace(tmp.name, path.name), 400) from e
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if state.router is None or not state.router.alive():
            return {**self.endpoint(name), "applied": False}
        project = load_endpoint_project(state.project_dir, state.endpoint_file)
        try:
            Supervisor(project, self.state_root).up(None, foreground=False)
        except LocalError as e:
            raise StudioError(str(e), 409) from e
        return {**self.endpoint(name), "applied": True}

    def invoke(self, name: str, body: bytes, content_type: str, deployment: str | None) -> InvokeResult:
        """POST ``body`` to the endpoint's scoring URI with its credential; pin ``deployment`` when given."""
        return timed_invoke(self._client(name), body, content_type, deployment)

    def swagger(self, name: str) -> Any:
        """The endpoint's OpenAPI document (``OnlineEndpointClient.swagger``).

        Raises:
            StudioError: the endpoint's own status when it refused, else 502 (no answer).
        """
        try:
            return self._client(name).swagger()
        except EndpointError as e:
            raise StudioError(str(e), e.status or 502) from e

    def _client(self, name: str) -> OnlineEndpointClient:
        """The SDK client of a running endpoint (URI and credential as ``endpoints invoke`` finds them)."""
        _, state = self._state(name)
        if state.auth_mode == "aad_token":
            raise StudioError(f"endpoint {name} uses {state.auth_mode}; the studio cannot get a token for it")
        try:
            uri, credential = self.local.connection(name)
        except EndpointError as e:  # not running
            raise StudioError(str(e), 409) from e
        with self._clients_lock:
            client = self._clients.get(name)
            if client is None or client.scoring_uri != uri:
                if client is not None:
                    client.close()
                # No retries: the page shows the endpoint's own first answer (a 429 is what the user should see).
                client = OnlineEndpointClient(uri, credential=credential, retry=NO_RETRY)
                self._clients[name] = client
            return client

    def keys(self, name: str) -> dict[str, str]:
        """The endpoint's primary and secondary keys (``primaryKey``, ``secondaryKey``) — the page's reveal."""
        _, state = self._state(name)
        if state.auth_mode != "key":
            raise StudioError(f"endpoint {name} uses {state.auth_mode}; it has no keys", 409)
        return {k: str(v) for k, v in self.local.credentials(name).items()}

    def regenerate_key(self, name: str, which: str) -> None:
        """Replace the primary or secondary key (``LocalEndpoints.regenerate_keys``, as ``endpoints regenerate-keys``):
        returns once the running deployments accept the new key; the other key works throughout.

        Raises:
            StudioError: 400 for a key name other than primary/secondary; 409 when the endpoint has no keys or a
                deployment did not take the new key in time.
        """
        if which not in KEY_FILES:
            raise StudioError(f"key: got {which!r}; regenerate primary or secondary")
        _, state = self._state(name)
        if state.auth_mode != "key":
            raise StudioError(f"endpoint {name} uses {state.auth_mode}; it has no keys", 409)
        try:
            self.local.regenerate_keys(name, which)  # type: ignore[arg-type]  # checked against KEY_FILES above
        except EndpointError as e:
            raise StudioError(str(e), 409) from e

    def log_names(self, name: str) -> list[str]:
        """Deployments (and ``router``) that have a log."""
        self._state(name)
        return sorted(self.local.log_files(name))

    def _log_path(self, name: str, log: str) -> Path:
        self._state(name)
        files = self.local.log_files(name)
        if log not in files:
            raise StudioError(f"no log for {log!r} (logs: {', '.join(sorted(files)) or 'none'})", 404)
        return files[log]

    def log_tail(self, name: str, log: str, lines: int = 200) -> tuple[str, int]:
        """The last ``lines`` lines of a log and the offset to follow it from."""
        from endpoints.local.supervisor import log_tail

        path = self._log_path(name, log)
        size = path.stat().st_size
        return log_tail(path, lines), size

    def log_since(self, name: str, log: str, offset: int) -> tuple[str, int]:
        """What was appended to a log after ``offset`` (at most 256 KiB per call) and the new offset."""
        path = self._log_path(name, log)
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:  # the log was truncated or replaced: start over
                offset = 0
            f.seek(offset)
            chunk = f.read(MAX_LOG_CHUNK)
        return chunk.decode(errors="replace"), offset + len(chunk)

    def charts(self) -> MetricsSampler:
        """The Metrics tab's source: the studio scrapes each live deployment's ``/metrics`` itself."""
        return MetricsSampler(self.metrics_targets)

    def metrics_targets(self) -> dict[tuple[str, str], str]:
        """``/metrics`` URL of every live deployment, by (endpoint, deployment)."""
        targets = {}
        for name in known_endpoints(self.state_root):
            state = StateDir(self.state_root, name).load()
            for dname, record in (state.deployments if state else {}).items():
                if record.alive():
                    targets[(name, dname)] = f"http://127.0.0.1:{record.port}/metrics"
        return targets

    # -------------------------------------------------------------------------------------------- batch
    def _batch_backend_for(self, folder: Path) -> None:
        try:
            batch = BatchEndpointClient(folder, state_dir=self.batch_state_dir)
        except EndpointError as e:
            raise StudioError(str(e)) from e
        api = self._job_api(batch)
        self._batch[api.endpoint] = batch
        self._batch_folders[api.endpoint] = folder.resolve()
        self._batch_auth[api.endpoint] = load_endpoint_project(folder).endpoint.auth_mode  # validated above

    @staticmethod
    def _job_api(batch: BatchEndpointClient) -> Any:
        """The in-process job API of a folder-mode client (endpoint name, deployments, default)."""
        return batch.backend.api  # type: ignore[attr-defined]  # folder mode: LocalJobs

    def _batch_of(self, name: str) -> BatchEndpointClient:
        if name not in self._batch:
            raise StudioError(
                f"no batch endpoint named {name!r} (batch endpoints: {', '.join(self._batch) or 'none'})", 404
            )
        return self._batch[name]

    def _batch_summary(self, name: str, batch: BatchEndpointClient) -> dict[str, Any]:
        api = self._job_api(batch)
        return {
            "name": name,
            "kind": "batch",
            "state": "Ready",
            "auth_mode": self._batch_auth[name],
            "scoring_uri": None,
            "deployment_count": len(api.deployments),
            "default_deployment": api.default,
            "deployments": sorted(api.deployments),
            "project_dir": str(self._batch_folders[name]),
        }

    def batch_endpoint(self, name: str) -> dict[str, Any]:
        """A batch endpoint with its jobs, newest first."""
        batch = self._batch_of(name)
        return {**self._batch_summary(name, batch), "jobs": self.batch_jobs(name)}

    def batch_jobs(self, name: str) -> list[dict[str, Any]]:
        """Jobs of a batch endpoint, newest first."""
        return [job.info for job in self._batch_of(name).jobs()]

    def batch_job(self, name: str, job_id: str) -> dict[str, Any]:
        """One job: status, progress, counts, failures with their reasons."""
        return self._call_batch(name, lambda batch: batch.job(job_id).info)

    def batch_invoke(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Start a job: ``{"input", "deployment"?, "output"?, "settings"?, "job_id"?}`` as the job API takes."""
        # The body as the job API takes it (validated there, field by field), not BatchEndpointClient.invoke's
        # keyword arguments: the page posts exactly that.
        return self._call_batch(name, lambda batch: batch.backend.submit(body))

    def batch_cancel(self, name: str, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job."""
        return self._call_batch(name, lambda batch: batch.job(job_id).cancel())

    def batch_output(self, name: str, job_id: str) -> Path:
        """The output file of a job (append_row), for download.

        Raises:
            StudioError: 404 when the job wrote no output file (yet).
        """
        job = self.batch_job(name, job_id)
        path = Path(job["output"]) / job["output_file_name"]
        if not path.is_file():
            raise StudioError(f"job {job_id} has no output file yet ({path.name})", 404)
        return path

    def batch_job_logs(self, name: str, job_id: str, lines: int = 200) -> dict[str, str]:
        """The last ``lines`` lines of each runner instance's log (``instance-0``, ...), as ``endpoints batch logs``."""
        logs = self._call_batch(name, lambda batch: batch.job(job_id).logs(lines))
        return {f"instance-{instance}": text for instance, text in logs.items()}

    def _call_batch(self, name: str, call: Any) -> dict[str, Any]:
        batch = self._batch_of(name)
        try:
            return call(batch)
        except EndpointError as e:
            text = str(e)
            status = 404 if "not found" in text or "no batch job" in text or "got '" in text else 400
            if "only Queued or Running jobs can be canceled" in text or "already exists" in text:
                status = 409
            raise StudioError(text, status) from e
