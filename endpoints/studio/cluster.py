"""The studio's backend for a cluster stack (``endpoints studio --stack S``), through the SDK's
:class:`~endpoints.sdk.Workspace`: the same methods as :class:`~endpoints.studio.backend.LocalBackend` where a stack
has the same thing, so the app and the page serve both.

Reads come from the stack (its outputs, its state, its file: URIs, traffic, mirror, deployments and images). Changes
(traffic split and mirror, key regeneration) go in two steps, as ``pulumi preview`` then ``pulumi up``: a request
without ``confirm`` runs the engine's preview with the policy pack and answers what would change (resources to
update/replace, the policy findings with their levels) and the preview's id; the same request with ``confirm: <id>``
applies it (preview with the pack again, then up). The id is a digest of the stack file as it was and as the change
writes it, so a confirm is refused (409) when the file changed since the preview or the change is another one, and an
id this studio did not hand out is refused too. One lock serialises every use of the stack: a preview writes the
stack file for its duration, and nothing may read it meanwhile. Reads are kept 5 s (the page polls every 3 s, and
each read runs the pulumi CLI); an apply empties them.

Logs come from the Kubernetes API (the pods of a deployment, by its labels); following them hands the page an opaque
cursor (per pod, the runtime's stamp of the last line shown) instead of local mode's byte offset. Metrics come from
the cluster's Prometheus when one is given (``--prometheus``; :class:`~endpoints.studio.metrics.PrometheusCharts`).
Batch jobs go to each batch endpoint's job API (its exported jobs URI, or ``--endpoint-url``) with the endpoint's
primary key, through the SDK's :class:`~endpoints.sdk.BatchEndpointClient`. None of these take the stack lock beyond
reading the stack (cached), so a preview running for minutes does not stop them.

Secrets: the keys leave only through :meth:`ClusterBackend.keys` (the page's reveal); previews name property paths,
never values; apply reports are reduced to what changed; the job API's key stays in its client.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from endpoints.sdk.batch import BatchEndpointClient
from endpoints.sdk.errors import EndpointError, StaleChangeError
from endpoints.sdk.online import NO_RETRY, OnlineEndpointClient
from endpoints.sdk.workspace import (
    Workspace,
    epoch_key,
    kube_core_api,
    pod_logs,
    poll_pod_logs,
    selector,
    split_stamp,
)
from endpoints.studio.backend import InvokeResult, StudioError, timed_invoke
from endpoints.studio.metrics import NoCharts, PrometheusCharts

T = TypeVar("T")
ROTATED = ("primary", "secondary")
MAX_PENDING = 64  # previews remembered for a confirm (oldest dropped first)
READ_TTL_S = 5.0  # the page polls every 3 s; each read of a stack runs the pulumi CLI twice


class ClusterBackend:
    """One cluster stack's endpoints.

    Args:
        workspace: The stack (``Workspace(stack, project_dir)``).
        prometheus: Base URL of the cluster's Prometheus, for the Metrics tab (default: none).
        urls: Endpoint name -> the URL this studio calls instead of the exported one (scoring URI of an online
            endpoint, jobs URI of a batch endpoint): where the exported host name does not resolve from here, e.g.
            a ``kubectl port-forward``.
    """

    kind = "cluster"
    follow_poll_s = 2.0  # each look at a deployment's logs lists its pods and reads each one through the API server

    def __init__(
        self, workspace: Workspace, prometheus: str | None = None, urls: Mapping[str, str] | None = None
    ) -> None:
        self.ws = workspace
        self.prometheus = prometheus
        self.urls = dict(urls or {})
        self._core_api: Any = None
        self._clients_lock = threading.Lock()  # the Kubernetes and job API clients (never held while reading the stack)
        self._batch_clients: dict[str, BatchEndpointClient] = {}
        self._retired: list[BatchEndpointClient] = []  # replaced after a refused key
        self._lock = threading.RLock()
        self._pending: dict[str, tuple[str, str]] = {}  # preview id -> (endpoint, what: "traffic" | "key:<which>")
        self._read_cache: dict[str, tuple[float, Any]] = {}  # what was read -> (when, answer); emptied by an apply

    def close(self) -> None:
        """Close the job API clients."""
        with self._clients_lock:
            for client in [*self._batch_clients.values(), *self._retired]:
                client.close()
            self._batch_clients.clear()
            self._retired.clear()

    def _use(self, call: Callable[[], T], status: int = 502) -> T:
        with self._lock:
            try:
                return call()
            except StaleChangeError as e:
                raise StudioError(str(e), 409) from e
            except EndpointError as e:
                text = str(e)
                raise StudioError(text, 404 if "has no endpoint" in text else status) from e

    # ------------------------------------------------------------------------------------------- read
    def _cached(self, key: str, read: Callable[[], T]) -> T:
        """A read of the stack, kept :data:`READ_TTL_S`. While a change holds the stack (a preview or an apply runs
        for minutes, the stack file holding the change meanwhile), a read kept before answers as it was rather than
        wait: the page's polls, logs, metrics and batch jobs go on."""
        hit = self._read_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < READ_TTL_S:
            return hit[1]
        if hit is not None and not self._lock.acquire(blocking=False):
            return hit[1]  # stale, while a change holds the stack
        if hit is None:
            self._lock.acquire()
        try:
            value = self._use(read)
            self._read_cache[key] = (time.monotonic(), value)
            return value
        finally:
            self._lock.release()

    def _show(self, name: str) -> dict[str, Any]:
        return self._cached(f"show:{name}", lambda: self.ws.show(name))

    def _summary(self, info: dict[str, Any]) -> dict[str, Any]:
        deployed = bool(info.get("scoring_uri") or info.get("jobs_uri"))
        return {
            "name": info["name"],
            "kind": info["kind"],
            "state": "Deployed" if deployed else "Not deployed",
            "auth_mode": info.get("auth_mode"),
            "scoring_uri": info.get("scoring_uri") or info.get("jobs_uri"),
            "swagger_uri": info.get("swagger_uri"),
            "deployment_count": len(info.get("deployments") or {}),
            "traffic": info.get("traffic") or {},
            "mirror_traffic": info.get("mirror_traffic") or {},
            "stack": self.ws.stack_name,
            "stack_file": str(self.ws.stack_file),
        }

    def list_endpoints(self) -> list[dict[str, Any]]:
        """The stack's endpoints (online and batch) with their URIs once deployed."""

        names = self._cached("endpoints", lambda: [row["name"] for row in self.ws.endpoints()])
        return [self._summary(self._show(name)) for name in names]

    def endpoint(self, name: str) -> dict[str, Any]:
        """One endpoint: URIs, traffic and mirror, and its deployments (instances, image)."""
        info = self._show(name)
        summary = self._summary(info)
        deployments = [
            {
                "name": dname,
                "state": summary["state"],  # the stack deploys an endpoint's deployments together
                "instance_count": d.get("instance_count"),
                "processes": None,  # pods, not processes: the instance count is what the stack asks for
                "instance_type": None,
                "image": d.get("image"),
                "model": None,
                "port": None,
                "traffic": d.get("traffic", 0),
                "mirror": d.get("mirror", 0),
            }
            for dname, d in sorted((info.get("deployments") or {}).items())
        ]
        return {**summary, "endpoint_file": str(self.ws.stack_file), "deployments": deployments}

    # ------------------------------------------------------------------------------------------- change
    def _remember(self, name: str, what: str, report: dict[str, Any]) -> dict[str, Any]:
        preview = report.get("preview") or {}
        change = report["change_id"]
        if report["changes"] and not preview.get("refused"):
            self._pending[change] = (name, what)
            while len(self._pending) > MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
        return {
            "id": change,
            "stack": self.ws.stack_name,
            "file": report["file"],
            "changes": report["changes"],
            "advisories": report["advisories"],
            "steps": preview.get("steps", []),
            "policies": preview.get("policies", []),
            "policy_packs": preview.get("policy_packs", {}),
            "summary": preview.get("summary", {}),
            "refused": bool(preview.get("refused")) or not report["changes"],
            "error": preview.get("error") if report["changes"] else f"no change: {report['file']} already holds it",
        }

    def _confirmable(self, confirm: str, name: str, what: str) -> None:
        if self._pending.get(confirm) != (name, what):
            raise StudioError(
                f"confirm: got {confirm!r}; no pending preview with that id for this change of {name}; "
                "preview it again",
                409,
            )

    def set_traffic(
        self, name: str, traffic: dict[str, int], mirror: dict[str, int], confirm: str | None = None
    ) -> dict[str, Any]:
        """Without ``confirm``: preview the new split (nothing applied). With the preview's id: apply it.

        Raises:
            StudioError: 400 for a refused split (the stack's rules), 409 for a confirm that is not the pending
                preview of this very change, 502 when the engine failed.
        """
        if confirm is None:
            report = self._use(lambda: self.ws.set_traffic(name, traffic, mirror=mirror, preview=True), 400)
            with self._lock:
                return {**self.endpoint(name), "applied": False, "preview": self._remember(name, "traffic", report)}
        with self._lock:
            self._confirmable(confirm, name, "traffic")
            try:
                report = self._use(lambda: self.ws.set_traffic(name, traffic, mirror=mirror, expect=confirm))
            finally:
                self._pending.pop(confirm, None)
                self._read_cache.clear()
            return {**self.endpoint(name), "applied": True, "up": report.get("up"), "changes": report["changes"]}

    def regenerate_key(self, name: str, which: str, confirm: str | None = None) -> dict[str, Any]:
        """Without ``confirm``: preview the key's replacement. With the preview's id: replace it (the other key keeps
        working). The answer never holds a key."""
        if which not in ROTATED:
            raise StudioError(f"key: got {which!r}; regenerate primary or secondary")
        what = f"key:{which}"
        if confirm is None:
            report = self._use(lambda: self.ws.regenerate_keys(name, which, preview=True), 400)
            with self._lock:
                return {"applied": False, "preview": self._remember(name, what, report)}
        with self._lock:
            self._confirmable(confirm, name, what)
            try:
                report = self._use(lambda: self.ws.regenerate_keys(name, which, expect=confirm))
            finally:
                self._pending.pop(confirm, None)
                self._read_cache.clear()
        return {"applied": True, "up": report.get("up"), "changes": report["changes"]}

    def keys(self, name: str) -> dict[str, str]:
        """The endpoint's ``primaryKey`` and ``secondaryKey`` (the stack's secret outputs) — the page's reveal."""
        info = self._show(name)
        if info.get("auth_mode") != "key":
            raise StudioError(f"endpoint {name} uses {info.get('auth_mode')}; it has no keys", 409)
        return self._use(lambda: self.ws.credentials(name), 409)

    # ------------------------------------------------------------------------------------------- test
    def invoke(self, name: str, body: bytes, content_type: str, deployment: str | None) -> InvokeResult:
        """POST ``body`` to the endpoint's scoring URI (the stack output) with its primary key."""
        return timed_invoke(self._client(name), body, content_type, deployment, close=True)

    def swagger(self, name: str) -> Any:
        """The endpoint's OpenAPI document, from its scoring URI."""
        client = self._client(name)
        try:
            return client.swagger()
        except EndpointError as e:
            raise StudioError(str(e), e.status or 502) from e
        finally:
            client.close()

    def _client(self, name: str) -> OnlineEndpointClient:
        info = self._show(name)
        if info["kind"] != "online" or not info.get("scoring_uri"):
            raise StudioError(f"endpoint {name} has no scoring URI in stack {self.ws.stack_name} (deployed?)", 409)
        credential = self.keys(name)["primaryKey"] if info.get("auth_mode") == "key" else None
        if info.get("auth_mode") not in ("key", None):
            raise StudioError(f"endpoint {name} uses {info.get('auth_mode')}; the studio cannot get a token for it")
        uri = self.urls.get(name) or str(info["scoring_uri"])
        return OnlineEndpointClient(uri, credential=credential, retry=NO_RETRY)

    # ------------------------------------------------------------------------------------------- logs
    def _namespace(self) -> str:
        return self._cached("namespace", self.ws.namespace)

    def _core(self) -> Any:
        """The Kubernetes API the engine deploys to (``KUBECONFIG`` of the workspace, else this process's)."""
        with self._clients_lock:
            if self._core_api is None:
                try:
                    self._core_api = kube_core_api(self.ws.env.get("KUBECONFIG"))
                except EndpointError as e:
                    raise StudioError(str(e), 503) from e
            return self._core_api

    def log_names(self, name: str) -> list[str]:
        """The endpoint's deployments (their pods' logs come from the Kubernetes API)."""
        info = self._show(name)
        return sorted(info.get("deployments") or {})

    def _log_selector(self, name: str, log: str) -> str:
        names = self.log_names(name)
        if log not in names:
            raise StudioError(f"no log for {log!r} (logs: {', '.join(names) or 'none'})", 404)
        return selector(name, log)

    def log_tail(self, name: str, log: str, lines: int = 200) -> tuple[str, str]:
        """The last ``lines`` lines of each pod of a deployment, one block per pod, and the cursor to follow them
        from (:meth:`log_since`).

        The Kubernetes API reads from the API server only (the stack lock is not taken: a preview running for
        minutes does not stop the logs)."""
        label_selector = self._log_selector(name, log)
        namespace, core = self._namespace(), self._core()
        floor = epoch_key(time.time())  # pods that appear later: what they log from now on
        logs = self._kube(lambda: pod_logs(core, namespace, label_selector, tail=lines, timestamps=True))
        last: dict[str, str] = {}
        blocks = []
        for pod, body in sorted(logs.items()):
            shown = []
            for line in body.splitlines():
                stamp, text = split_stamp(line)
                last[pod] = stamp
                shown.append(f"{text}\n")
            blocks.append(f"==> pod {pod} <==\n{''.join(shown)}")
        return "".join(blocks), encode_cursor(last, floor)

    def log_since(self, name: str, log: str, offset: str) -> tuple[str, str]:
        """The lines the deployment's pods logged after the cursor ``offset`` (from :meth:`log_tail` or the previous
        call), each as ``<pod> | <line>`` as ``endpoints logs -f`` prints them, and the next cursor.

        The cursor holds, per pod, the runtime's stamp of the last line shown (so nothing repeats and nothing is
        skipped however seldom it is called), and the moment the tail was read: a pod that appears later shows
        what it logged after that. It is opaque to the page, which hands it back as it got it.

        Raises:
            StudioError: 400 for a cursor this studio did not make, 404 for an unknown deployment, 502 when the
                API server refused.
        """
        last, floor = decode_cursor(offset)
        label_selector = self._log_selector(name, log)
        namespace, core = self._namespace(), self._core()
        found = self._kube(lambda: poll_pod_logs(core, namespace, label_selector, last, floor=floor))
        return "".join(f"{pod} | {line}\n" for pod, line in found), encode_cursor(last, floor)

    @staticmethod
    def _kube(call: Callable[[], T]) -> T:
        try:
            return call()
        except EndpointError as e:
            raise StudioError(str(e), 502) from e

    # ------------------------------------------------------------------------------------------- metrics
    def metrics_targets(self) -> dict[tuple[str, str], str]:
        """No scraping of cluster pods from here: the cluster's Prometheus has them (:meth:`charts`)."""
        return {}

    def charts(self) -> PrometheusCharts | NoCharts:
        """The Metrics tab's source: the cluster's Prometheus (``--prometheus``), queried for this stack's namespace,
        else none (the tab says how to give one)."""
        if self.prometheus is None:
            return NoCharts(f"no Prometheus for stack {self.ws.stack_name}: start the studio with --prometheus URL")
        return PrometheusCharts(self.prometheus, self._namespace)

    # ------------------------------------------------------------------------------------------- batch
    def _jobs_client(self, name: str, fresh: bool = False) -> BatchEndpointClient:
        """The job API client of a batch endpoint (its exported jobs URI, or ``--endpoint-url``), with its primary
        key read once from the stack's outputs (``fresh``: read again, after the job API refused it)."""
        info = self._show(name)
        if info["kind"] != "batch":
            raise StudioError(f"endpoint {name} is an {info['kind']} endpoint, not a batch endpoint", 404)
        uri = self.urls.get(name) or info.get("jobs_uri")
        if not uri:
            raise StudioError(f"batch endpoint {name} has no jobs URI in stack {self.ws.stack_name} (deployed?)", 409)
        with self._clients_lock:
            client = self._batch_clients.get(name)
            if client is not None and not fresh and client.target == uri:
                return client
        auth = info.get("auth_mode")
        if auth not in ("key", None):
            raise StudioError(f"endpoint {name} uses {auth}; the studio cannot get a token for it", 409)
        key = self.keys(name)["primaryKey"] if auth == "key" else None  # the stack's outputs: not under _clients_lock
        with self._clients_lock:
            old = self._batch_clients.get(name)
            if old is not None:  # another request may still be using it: closed with the studio
                self._retired.append(old)
            client = BatchEndpointClient(uri, key=key)
            self._batch_clients[name] = client
            return client

    def _batch(self, name: str, call: Callable[[BatchEndpointClient], T]) -> T:
        """``call`` with the endpoint's job API client; once more with the key read again when it answers 401 (a
        key regenerated since). The job API's own status passes through (400, 404, 409); no answer is 502."""
        client = self._jobs_client(name)
        for attempt in range(2):
            try:
                return call(client)
            except EndpointError as e:
                if e.status == 401 and attempt == 0:
                    client = self._jobs_client(name, fresh=True)
                    continue
                raise StudioError(str(e), e.status if e.status in (400, 404, 409) else 502) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def batch_endpoint(self, name: str) -> dict[str, Any]:
        """A batch endpoint of the stack with its jobs, newest first (from its job API)."""
        info = self._show(name)
        jobs = self._batch(name, lambda c: c.backend.list_jobs())
        return {
            **self._summary(info),
            "default_deployment": info.get("default_deployment"),
            "deployments": sorted(info.get("deployments") or {}),
            "jobs": jobs,
        }

    def batch_job(self, name: str, job_id: str) -> dict[str, Any]:
        """One job: status, progress, counts, failed mini-batches with their reasons."""
        return self._batch(name, lambda c: c.backend.get(job_id))

    def batch_invoke(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Start a job: the body as the job API takes it (``input`` is a path inside the runner pods or a URI)."""
        return self._batch(name, lambda c: c.backend.submit(body))

    def batch_cancel(self, name: str, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (the job API suspends its Job)."""
        return self._batch(name, lambda c: c.backend.cancel(job_id))

    def batch_output(self, name: str, job_id: str) -> Path:
        """The job's output file (append_row), copied from the job API into a folder of its own (the caller removes
        it once sent).

        Raises:
            StudioError: 404 when the job wrote no output file (yet).
        """
        job = self.batch_job(name, job_id)
        folder = Path(tempfile.mkdtemp(prefix="endpoints-studio-output-"))
        dest = folder / job["output_file_name"]
        try:
            self._batch(name, lambda c: c.backend.fetch(job_id, job["output_file_name"], dest))
        except StudioError as e:
            shutil.rmtree(folder, ignore_errors=True)
            if e.status == 404:
                raise StudioError(f"job {job_id} has no output file yet ({dest.name})", 404) from e
            raise
        return dest

    def batch_job_logs(self, name: str, job_id: str, lines: int = 200) -> dict[str, str]:
        """The last ``lines`` lines of each of the job's runner pods, by pod name."""
        return self._batch(name, lambda c: c.backend.logs(job_id, lines))


def encode_cursor(last: dict[str, str], floor: str) -> str:
    """The follow cursor the page hands back: per pod the stamp of the last line shown, and the floor."""
    raw = json.dumps({"pods": last, "floor": floor}, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[dict[str, str], str]:
    """The pods' stamps and the floor of a cursor from :func:`encode_cursor`.

    Raises:
        StudioError: 400, a cursor this studio did not make.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        pods, floor = data["pods"], data["floor"]
        if not (isinstance(pods, dict) and all(isinstance(v, str) for v in pods.values()) and isinstance(floor, str)):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, KeyError, binascii.Error) as e:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        raise StudioError(f"offset: got {shown!r}; pass the offset of the studio's last log answer") from e
    return {str(k): v for k, v in pods.items()}, floor
