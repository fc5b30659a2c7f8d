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

Secrets: the keys leave only through :meth:`ClusterBackend.keys` (the page's reveal); previews name property paths,
never values; apply reports are reduced to what changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from endpoints.sdk.errors import EndpointError, StaleChangeError
from endpoints.sdk.online import NO_RETRY, OnlineEndpointClient
from endpoints.sdk.workspace import Workspace
from endpoints.studio.backend import InvokeResult, StudioError, timed_invoke

T = TypeVar("T")
ROTATED = ("primary", "secondary")
MAX_PENDING = 64  # previews remembered for a confirm (oldest dropped first)
READ_TTL_S = 5.0  # the page polls every 3 s; each read of a stack runs the pulumi CLI twice


class ClusterBackend:
    """One cluster stack's endpoints.

    Args:
        workspace: The stack (``Workspace(stack, project_dir)``).
    """

    kind = "cluster"

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self._lock = threading.RLock()
        self._pending: dict[str, tuple[str, str]] = {}  # preview id -> (endpoint, what: "traffic" | "key:<which>")
        self._read_cache: dict[str, tuple[float, Any]] = {}  # what was read -> (when, answer); emptied by an apply

    def close(self) -> None:
        """Nothing held between requests."""

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
        with self._lock:
            hit = self._read_cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < READ_TTL_S:
                return hit[1]
            value = self._use(read)
            self._read_cache[key] = (time.monotonic(), value)
            return value

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
        return OnlineEndpointClient(str(info["scoring_uri"]), credential=credential, retry=NO_RETRY)

    # ------------------------------------------------------------------------------------------- logs
    def log_names(self, name: str) -> list[str]:
        """The endpoint's deployments (their pods' logs come from the Kubernetes API)."""
        info = self._show(name)
        return sorted(info.get("deployments") or {})

    def log_tail(self, name: str, log: str, lines: int = 200) -> tuple[str, int]:
        """The last ``lines`` lines of each pod of a deployment, one block per pod."""
        if log not in self.log_names(name):
            raise StudioError(f"no log for {log!r} (logs: {', '.join(self.log_names(name)) or 'none'})", 404)
        logs = self._use(lambda: self.ws.logs(name, log, tail=lines))
        text = "".join(
            f"==> pod {pod} <==\n{body}{'' if body.endswith(chr(10)) or not body else chr(10)}"
            for pod, body in sorted(logs.items())
        )
        return text, 0

    def log_since(self, name: str, log: str, offset: int) -> tuple[str, int]:
        """Following a pod log by byte offset has no meaning on a cluster."""
        raise StudioError(
            f"following logs of stack {self.ws.stack_name} is not in the studio; run "
            f"`endpoints logs {name} --deployment {log} --follow --stack {self.ws.stack_name}`",
            501,
        )

    def metrics_targets(self) -> dict[tuple[str, str], str]:
        """No scraping of cluster pods from here (the cluster's Prometheus has them)."""
        return {}

    # ------------------------------------------------------------------------------------------- batch
    def _no_batch(self, name: str) -> NoReturn:
        raise StudioError(
            f"batch jobs of stack {self.ws.stack_name} are not in the studio; use `endpoints batch` with the "
            f"endpoint's jobs URI ({name})",
            501,
        )

    def batch_endpoint(self, name: str) -> dict[str, Any]:
        self._no_batch(name)

    def batch_job(self, name: str, job_id: str) -> dict[str, Any]:
        self._no_batch(name)

    def batch_invoke(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._no_batch(name)

    def batch_cancel(self, name: str, job_id: str) -> dict[str, Any]:
        self._no_batch(name)

    def batch_output(self, name: str, job_id: str) -> Any:
        self._no_batch(name)

    def batch_job_logs(self, name: str, job_id: str, lines: int = 200) -> dict[str, str]:
        self._no_batch(name)
