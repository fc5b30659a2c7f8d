"""A cluster stack from Python, through the Pulumi Automation API (``pulumi.automation``) and the stack files.

    ws = Workspace(stack="dev")                     # stacks/Pulumi.dev.yaml of the project found from here
    ws.endpoints()                                  # [{"name", "kind", "scoring_uri" | "jobs_uri"}]
    ws.show("car-classifier")                       # deployments, traffic, mirror, URIs, images
    ws.set_traffic("car-classifier", {"alice": 80, "bob": 20})
    ws.promote("bob", from_stack="dev")             # on Workspace(stack="staging")
    ws.regenerate_keys("car-classifier", "secondary")
    ws.credentials("car-classifier")                # {"primaryKey", "secondaryKey"}

Changes are made where a reviewer sees them: the stack file (``stacks/Pulumi.<stack>.yaml``, edited in place by
:mod:`endpoints.app.promote`, comments and order kept), then ``preview`` with the policy pack and ``up`` of the stack
program in the project folder. A refused preview puts the file back as it was. The backend and the secrets
passphrase come from the environment as for the ``pulumi`` command (``PULUMI_BACKEND_URL``,
``PULUMI_CONFIG_PASSPHRASE`` or ``PULUMI_CONFIG_PASSPHRASE_FILE``); ``pulumi`` must be on ``PATH``.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from components.builders.common import DEPLOYMENT_LABEL, ENDPOINT_LABEL  # the labels the builders put on pods
from endpoints.sdk.errors import EndpointError, StaleChangeError, spec_message

POLICY_PACK_DIR = "policies"
OUTPUT_NAMES = {"scoringUri": "scoring_uri", "swaggerUri": "swagger_uri", "jobsUri": "jobs_uri"}
SECRET_OUTPUTS = ("primaryKey", "secondaryKey")
LOG_POLL_S = 2.0
FOLLOW_TAIL = 10
# Engine steps a preview reports (the replacement's create/delete halves are folded into "replace").
PREVIEW_OPS = ("create", "update", "replace", "delete")


def find_project(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding ``Pulumi.yaml``.

    Raises:
        EndpointError: none.
    """
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    raise EndpointError(f"{start}: no Pulumi.yaml here or above; pass project_dir=")


class Workspace:
    """One stack of the Pulumi project.

    Args:
        stack: Stack name (``stacks/Pulumi.<stack>.yaml``).
        project_dir: The Pulumi project folder (default: found from the current folder upwards).
        env: Extra environment for the ``pulumi`` command (default: this process's environment only).
        policy_pack: Policy pack folder run with every preview and up (default ``<project>/policies``; None
            turns it off only when given as ``False``).
        on_output: Receives the engine's output lines (default: dropped).
        stack_factory: For tests: builds the automation ``Stack`` object instead of ``select_stack``.
    """

    def __init__(
        self,
        stack: str,
        project_dir: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        policy_pack: str | Path | bool = True,
        on_output: Callable[[str], None] | None = None,
        stack_factory: Callable[[Workspace], Any] | None = None,
    ) -> None:
        self.stack_name = stack
        self.root = Path(project_dir).resolve() if project_dir is not None else find_project(Path.cwd())
        from endpoints.app.promote import stack_file
        from endpoints.errors import SpecError

        try:
            self.stack_file = stack_file(self.root, stack)
        except SpecError as e:
            raise EndpointError(spec_message(e)) from e
        self.env = dict(env or {})
        if policy_pack is True:
            self.policy_packs = [str(self.root / POLICY_PACK_DIR)]
        elif policy_pack is False:
            self.policy_packs = []
        else:
            self.policy_packs = [str(Path(policy_pack).resolve())]
        self.on_output = on_output
        self._factory = stack_factory
        self._stack: Any = None

    # ------------------------------------------------------------------------------------------ engine
    @property
    def stack(self) -> Any:
        """The ``pulumi.automation.Stack`` (selected on first use: the stack must exist in the backend)."""
        if self._stack is None:
            if self._factory is not None:
                self._stack = self._factory(self)
            else:
                from pulumi import automation as auto

                opts = auto.LocalWorkspaceOptions(work_dir=str(self.root), env_vars=self.env or None)
                try:
                    self._stack = auto.select_stack(stack_name=self.stack_name, work_dir=str(self.root), opts=opts)
                except FileNotFoundError as e:
                    raise EndpointError(
                        f"stack {self.stack_name}: the pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/)"
                    ) from e
                except Exception as e:  # automation raises CommandError subclasses and FileNotFoundError (no CLI)
                    raise EndpointError(f"stack {self.stack_name}: cannot select it: {_short(e)}") from e
        return self._stack

    def outputs(self) -> dict[str, Any]:
        """Stack outputs, secrets decrypted (the Automation API reads them with ``--show-secrets``)."""
        stack = self.stack
        try:
            raw = stack.outputs()
        except Exception as e:
            raise EndpointError(f"stack {self.stack_name}: cannot read outputs: {_short(e)}") from e
        return {k: getattr(v, "value", v) for k, v in raw.items()}

    def _config(self) -> dict[str, Any]:
        from components.builders.stack_config import load_stack_config

        return load_stack_config(self.root, self.stack_name)

    def _projects(self) -> list[Any]:
        from components.builders.stack_config import settings_from_config
        from endpoints.errors import SpecError
        from endpoints.project import load_endpoint_project

        try:
            settings = settings_from_config(self._config(), str(self.stack_file))
            out = []
            for entry in settings.endpoints:
                folder = self.root / entry
                if folder.suffix in (".yml", ".yaml"):
                    out.append(load_endpoint_project(folder.parent, folder.name))
                else:
                    out.append(load_endpoint_project(folder))
            return out
        except SpecError as e:
            raise EndpointError(spec_message(e)) from e

    def _project(self, name: str) -> Any:
        projects = self._projects()
        for project in projects:
            if project.endpoint.name == name:
                return project
        known = ", ".join(p.endpoint.name for p in projects) or "none"
        raise EndpointError(f"{self.stack_file}: stack {self.stack_name} has no endpoint {name!r} (endpoints: {known})")

    # ------------------------------------------------------------------------------------------ read
    def endpoints(self) -> list[dict[str, Any]]:
        """The stack's endpoints: name, kind (online/batch), and their URIs once deployed."""
        outputs = self.outputs()
        rows = []
        for project in self._projects():
            name = project.endpoint.name
            row: dict[str, Any] = {"name": name, "kind": project.endpoint.kind}
            for output, key in OUTPUT_NAMES.items():
                if f"{name}.{output}" in outputs:
                    row[key] = outputs[f"{name}.{output}"]
            rows.append(row)
        return rows

    def show(self, name: str) -> dict[str, Any]:
        """One endpoint: kind, auth mode, URIs, live traffic and mirror shares (online) or the default deployment
        (batch), and per deployment its share, instance count and image (the stack file's pinned image, else the one
        the cluster runs, from the state)."""
        from endpoints.app.promote import OVERRIDES_KEY

        project = self._project(name)
        outputs = self.outputs()
        override = (self._config().get(OVERRIDES_KEY.split(":", 1)[1]) or {}).get(name) or {}
        endpoint = project.endpoint
        traffic = {str(k): int(v) for k, v in (override.get("traffic") or getattr(endpoint, "traffic", {})).items()}
        mirror_src = override.get("mirrorTraffic") or getattr(endpoint, "mirror_traffic", {})
        mirror = {str(k): int(v) for k, v in mirror_src.items()}
        running = self._running_images(name)
        deployments = {}
        for dname, spec in sorted(project.deployments.items()):
            dover = (override.get("deployments") or {}).get(dname) or {}
            deployments[dname] = {
                "traffic": traffic.get(dname, 0),
                "mirror": mirror.get(dname, 0),
                "instance_count": dover.get("instanceCount", getattr(spec, "instance_count", None)),
                "image": dover.get("image") or running.get(dname),
            }
        info: dict[str, Any] = {
            "name": name,
            "kind": endpoint.kind,
            "auth_mode": getattr(endpoint, "auth_mode", None),
            "stack": self.stack_name,
        }
        for output, key in OUTPUT_NAMES.items():
            if f"{name}.{output}" in outputs:
                info[key] = outputs[f"{name}.{output}"]
        if endpoint.kind == "online":
            info.update({"traffic": traffic, "mirror_traffic": mirror})
        else:  # the deployment a job runs on when it names none (the job API's own rule: else the only one)
            only = next(iter(project.deployments)) if len(project.deployments) == 1 else None
            info["default_deployment"] = endpoint.defaults.deployment_name or only
        info["deployments"] = deployments
        return info

    def _running_images(self, endpoint: str) -> dict[str, str]:
        """Deployment -> image of the Kubernetes Deployments (or batch Job templates) the state holds."""
        stack = self.stack
        try:
            exported = stack.export_stack()
        except Exception as e:
            raise EndpointError(f"stack {self.stack_name}: cannot export its state: {_short(e)}") from e
        deployment = getattr(exported, "deployment", exported) or {}
        images: dict[str, str] = {}
        for resource in deployment.get("resources") or []:
            if resource.get("type") != "kubernetes:apps/v1:Deployment":
                continue
            outputs = resource.get("outputs") or {}
            labels = ((outputs.get("metadata") or {}).get("labels")) or {}
            if labels.get(ENDPOINT_LABEL) != endpoint or DEPLOYMENT_LABEL not in labels:
                continue
            containers = (((outputs.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
            if containers:
                images[labels[DEPLOYMENT_LABEL]] = containers[0].get("image", "")
        return images

    def credentials(self, name: str) -> dict[str, str]:
        """The endpoint's ``primaryKey`` and ``secondaryKey`` (secret outputs, decrypted).

        Raises:
            EndpointError: the stack exports no keys for ``name`` (not deployed yet?).
        """
        outputs = self.outputs()
        keys = {k: outputs.get(f"{name}.{k}") for k in SECRET_OUTPUTS}
        if any(v is None for v in keys.values()):
            self._project(name)
            raise EndpointError(f"stack {self.stack_name}: no keys exported for {name}; run `pulumi up` first")
        return {k: str(v) for k, v in keys.items()}

    # ------------------------------------------------------------------------------------------ change
    def _apply(self, change: Any, *, dry_run: bool, preview: bool = False, expect: str | None = None) -> dict[str, Any]:
        """Write an edit of the stack file, preview it with the policy pack, then ``up``; a refused preview puts
        the file back. ``preview``: only preview (the file is put back after); ``expect``: the ``change_id`` of the
        preview being confirmed (refused with :class:`StaleChangeError` when this change is another)."""
        report: dict[str, Any] = {
            "file": str(change.path),
            "changes": list(change.changes),
            "advisories": list(change.notes),
            "written": False,
            "change_id": change_id(change),
        }
        if expect is not None and expect != report["change_id"]:
            raise StaleChangeError(
                f"stack {self.stack_name}: change {expect} is not the one previewed: {change.path} changed since the "
                "preview, or the change differs; preview it again"
            )
        if not change.changes or dry_run:
            return report
        if preview:
            report["preview"] = self._preview(change)
            return report
        stack = self.stack  # selected before the file changes: no engine, no edit
        change.path.write_text(change.text, encoding="utf-8")
        report["written"] = True
        kwargs: dict[str, Any] = {"policy_packs": self.policy_packs} if self.policy_packs else {}
        if self.on_output is not None:
            kwargs["on_output"] = self.on_output
        try:
            preview_result = stack.preview(**kwargs)
        except Exception as e:
            change.path.write_text(change.original, encoding="utf-8")
            report["written"] = False
            raise EndpointError(
                f"stack {self.stack_name}: preview refused the change; {change.path} is unchanged: {_short(e)}"
            ) from e
        report["preview"] = dict(getattr(preview_result, "change_summary", {}) or {})
        try:
            result = stack.up(**kwargs)
        except Exception as e:
            raise EndpointError(
                f"stack {self.stack_name}: up failed; {change.path} holds the change, fix the cause and run "
                f"`pulumi up --stack {self.stack_name}`: {_short(e)}"
            ) from e
        summary = getattr(result, "summary", None)
        report["up"] = {
            "result": getattr(summary, "result", None),
            "resource_changes": dict(getattr(summary, "resource_changes", None) or {}),
        }
        return report

    def _preview(self, change: Any) -> dict[str, Any]:
        """Preview ``change`` with the policy pack, the stack file holding it only meanwhile.

        Returns ``{"summary", "steps", "policies", "policy_packs", "refused", "error"}``: ``steps`` are the resources
        that would change (``urn``, ``type``, ``name``, ``op``, ``diffs`` — property paths, never values, so no secret
        shows), ``policies`` the pack's findings (``policy``, ``pack``, ``level``, ``message``, ``urn``);
        ``refused`` when the engine or a mandatory policy refused the change (``error`` says why).
        """
        stack = self.stack
        steps: list[dict[str, Any]] = []
        policies: list[dict[str, Any]] = []
        packs: dict[str, str] = {}

        def on_event(event: Any) -> None:
            pre = getattr(event, "resource_pre_event", None)
            if pre is not None and pre.metadata is not None:
                meta = pre.metadata
                op = str(getattr(meta.op, "value", meta.op))
                if op in PREVIEW_OPS:
                    diffs = sorted(meta.detailed_diff or {}) or sorted(meta.diffs or [])
                    steps.append(
                        {
                            "urn": meta.urn,
                            "type": meta.type,
                            "name": meta.urn.rsplit("::", 1)[-1],
                            "op": op,
                            "diffs": diffs,
                        }
                    )
            policy = getattr(event, "policy_event", None)
            if policy is not None:
                policies.append(
                    {
                        "policy": policy.policy_name,
                        "pack": policy.policy_pack_name,
                        "level": policy.enforcement_level,
                        "message": policy.message.strip(),
                        "urn": policy.resource_urn,
                    }
                )
            summary = getattr(event, "summary_event", None)
            if summary is not None:
                # "<name>|local|<folder>" for a local pack: its name is enough (and names no folder)
                packs.update({pack.split("|", 1)[0]: version for pack, version in (summary.policy_packs or {}).items()})

        kwargs: dict[str, Any] = {"policy_packs": self.policy_packs} if self.policy_packs else {}
        if self.on_output is not None:
            kwargs["on_output"] = self.on_output
        out: dict[str, Any] = {"refused": False, "error": None}
        change.path.write_text(change.text, encoding="utf-8")
        try:
            result = stack.preview(on_event=on_event, **kwargs)
            out["summary"] = dict(getattr(result, "change_summary", {}) or {})
        except Exception as e:  # the engine or a mandatory policy refused it; the events say what was found
            out.update(refused=True, error=f"stack {self.stack_name}: preview refused the change: {_short(e)}")
            out["summary"] = {}
        finally:
            change.path.write_text(change.original, encoding="utf-8")
        out.update(steps=steps, policies=policies, policy_packs=packs)
        return out

    def set_traffic(
        self,
        name: str,
        traffic: Mapping[str, int] | None = None,
        *,
        mirror: Mapping[str, int] | None = None,
        dry_run: bool = False,
        preview: bool = False,
        expect: str | None = None,
    ) -> dict[str, Any]:
        """Set an online endpoint's live split and/or mirror shares in the stack file, then preview and up.

        Args:
            name: Endpoint name.
            traffic: Deployment -> live percent, summing to 0 or 100 (default: unchanged).
            mirror: Deployment -> mirrored percent, at most 50 in all (default unchanged; ``{}`` ends mirroring).
            dry_run: Only compute and check the change.
            preview: Compute it and run the engine's preview with the policy pack, nothing applied: ``preview``
                holds the resources that would change and the policy findings (see :meth:`_preview`).
            expect: The ``change_id`` of an earlier preview this call confirms: a change that is not that one
                (the stack file changed since, or other shares) is refused.

        Returns:
            ``{"file", "changes", "advisories", "written", "change_id", "preview", "up"}``.

        Raises:
            EndpointError: the split is refused (by the rules or the policy pack's preview), or up failed.
            StaleChangeError: ``expect`` is not this change's id.
        """
        from endpoints.app.promote import set_split
        from endpoints.errors import SpecError

        try:
            change = set_split(self.root, self.stack_name, name, traffic, mirror)
        except SpecError as e:
            raise EndpointError(spec_message(e)) from e
        return self._apply(change, dry_run=dry_run, preview=preview, expect=expect)

    def promote(
        self,
        deployment: str,
        from_stack: str,
        *,
        endpoint: str | None = None,
        traffic: int | None = None,
        mirror: int | None = None,
        image: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Promote ``deployment``'s pinned image and model from ``from_stack`` into this stack (as ``endpoints
        promote``), then preview and up this stack.

        Raises:
            EndpointError: the promotion is refused, or up failed.
        """
        from endpoints.app.promote import promote
        from endpoints.errors import SpecError

        try:
            change = promote(
                self.root,
                deployment,
                from_stack,
                self.stack_name,
                endpoint=endpoint,
                traffic=traffic,
                mirror=mirror,
                image=image,
            )
        except SpecError as e:
            raise EndpointError(spec_message(e)) from e
        return self._apply(change, dry_run=dry_run)

    def regenerate_keys(
        self, name: str, which: str, *, dry_run: bool = False, preview: bool = False, expect: str | None = None
    ) -> dict[str, Any]:
        """Regenerate one key of an endpoint: count up its generation in the stack file, then preview and up.

        Only that key's ``EndpointKey`` (a dynamic resource) is replaced; the Secret is updated in place and the
        serving pods re-read it, so callers using the other key never see a 401. Returns the apply report with
        ``credentials`` added. ``preview`` and ``expect`` as for :meth:`set_traffic`.

        Raises:
            EndpointError: unknown key or endpoint, or up failed.
            StaleChangeError: ``expect`` is not this change's id.
        """
        from endpoints.app.promote import bump_key_rotation
        from endpoints.errors import SpecError

        try:
            change = bump_key_rotation(self.root, self.stack_name, name, which)
        except SpecError as e:
            raise EndpointError(spec_message(e)) from e
        report = self._apply(change, dry_run=dry_run, preview=preview, expect=expect)
        if report.get("up") is not None:
            report["credentials"] = self.credentials(name)
        return report

    # ------------------------------------------------------------------------------------------ logs
    def namespace(self) -> str:
        """The stack's namespace (``ml-endpoints:namespace``)."""
        return str(self._config().get("namespace") or "ml-endpoints")

    def _core_api(self) -> Any:
        """The Kubernetes API of the cluster the engine deploys to: ``KUBECONFIG`` of ``env``, else the process's."""
        return kube_core_api(self.env.get("KUBECONFIG"))

    def _check_deployment(self, name: str, deployment: str | None) -> None:
        project = self._project(name)
        if deployment is not None and deployment not in project.deployments:
            known = ", ".join(sorted(project.deployments)) or "none"
            raise EndpointError(
                f"{self.stack_file}: endpoint {name!r} of stack {self.stack_name} has no deployment {deployment!r} "
                f"(deployments: {known})"
            )

    def logs(
        self,
        name: str,
        deployment: str | None = None,
        *,
        tail: int | None = 100,
        core_api: Any = None,
    ) -> dict[str, str]:
        """Pod logs of an endpoint's deployments (one or all), by pod name, from the Kubernetes API.

        Args:
            name: Endpoint name.
            deployment: One deployment (default: all of them).
            tail: Last lines per pod (default 100; None: everything).
            core_api: A ``kubernetes.client.CoreV1Api`` (default: from ``KUBECONFIG`` of the workspace's ``env``, else
                ``$KUBECONFIG``/``~/.kube/config``: the cluster the engine deploys to).

        Raises:
            EndpointError: unknown endpoint or deployment (naming the known ones), or the API server refused.
        """
        self._check_deployment(name, deployment)
        return pod_logs(core_api or self._core_api(), self.namespace(), selector(name, deployment), tail=tail)

    def follow_logs(
        self,
        name: str,
        deployment: str | None = None,
        *,
        core_api: Any = None,
        stop: Callable[[], bool] | None = None,
        after: float | None = None,
    ) -> Iterator[tuple[str, str]]:
        """Yield ``(pod, line)`` as new lines appear (polled with timestamps, so nothing repeats) until ``stop()``.

        A pod's first look yields its last lines; with ``after`` (epoch seconds: what ``endpoints logs -f`` passes,
        the time before it printed the tail) only the lines the runtime stamped later.
        """
        self._check_deployment(name, deployment)
        yield from follow_pod_logs(
            core_api or self._core_api(), self.namespace(), selector(name, deployment), stop=stop, after=after
        )


def change_id(change: Any) -> str:
    """Names one change of one stack file: a digest of the file as it is and as the change writes it. A preview's id
    confirms only that change, and only while the file is unchanged."""
    digest = hashlib.sha256()
    for part in (str(change.path), change.original, change.text):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def selector(endpoint: str, deployment: str | None = None) -> str:
    """Label selector of an endpoint's (or one deployment's) pods, as the builders label them."""
    return f"{ENDPOINT_LABEL}={endpoint}" + (f",{DEPLOYMENT_LABEL}={deployment}" if deployment else "")


def kube_core_api(kubeconfig: str | None = None) -> Any:
    """A ``CoreV1Api`` from ``kubeconfig`` (default ``$KUBECONFIG``, else ``~/.kube/config``), else in-cluster
    config."""
    try:
        from kubernetes import client, config
    except ImportError as e:
        raise EndpointError(
            "reading cluster logs needs the kubernetes package: pip install 'k8s-ml-endpoints[kubernetes]'"
        ) from e
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
    except Exception:
        try:
            config.load_incluster_config()
        except Exception as e:
            raise EndpointError(f"no Kubernetes credentials: set KUBECONFIG ({_short(e)})") from e
        api_client = client.ApiClient()
    return client.CoreV1Api(api_client)


def _pods(core_api: Any, namespace: str, label_selector: str) -> list[str]:
    try:
        pods = core_api.list_namespaced_pod(namespace, label_selector=label_selector)
    except Exception as e:
        raise EndpointError(f"namespace {namespace}: cannot list pods ({label_selector}): {_short(e)}") from e
    return sorted(p.metadata.name for p in pods.items)


def pod_logs(
    core_api: Any, namespace: str, label_selector: str, *, tail: int | None = 100, timestamps: bool = False
) -> dict[str, str]:
    """Logs of every pod matching ``label_selector``, by pod name (a pod still starting reads empty); with
    ``timestamps``, each line starts with the runtime's RFC 3339 stamp and a space (see :func:`poll_pod_logs`)."""
    out = {}
    for pod in _pods(core_api, namespace, label_selector):
        try:
            out[pod] = core_api.read_namespaced_pod_log(pod, namespace, tail_lines=tail, timestamps=timestamps)
        except Exception as e:
            if getattr(e, "status", None) not in (400, 404):
                raise EndpointError(f"pod {namespace}/{pod}: cannot read its log: {_short(e)}") from e
            out[pod] = ""
    return out


def split_stamp(line: str) -> tuple[str, str]:
    """A line read with ``timestamps`` as (its stamp as :func:`_stamp_key` writes it, the line itself)."""
    raw_stamp, _, rest = line.partition(" ")
    return _stamp_key(raw_stamp), rest


def poll_pod_logs(
    core_api: Any,
    namespace: str,
    label_selector: str,
    last: dict[str, str],
    *,
    floor: str | None = None,
    window_s: float = 5 * LOG_POLL_S + 5,
) -> list[tuple[str, str]]:
    """One look at every pod matching ``label_selector``: the ``(pod, line)`` pairs the runtime stamped after
    ``last[pod]`` (updated in place).

    A pod ``last`` does not hold yet (one that appeared since) yields its last :data:`FOLLOW_TAIL` lines, those
    stamped after ``floor`` (a stamp as :func:`_stamp_key` writes it) when given; the pods ``last`` holds are compared
    with their own last stamp only (the node's clock, so a skew between this machine and the node loses nothing). A
    pod is read back ``window_s`` seconds, or from its last stamp when that is older (with the same margin), so a
    caller that looks seldom misses nothing; what was seen is skipped by its stamp, so nothing repeats.
    """
    out: list[tuple[str, str]] = []
    now = time.time()
    for pod in _pods(core_api, namespace, label_selector):
        since = last.get(pod)
        try:
            if since is None:  # first look at this pod: its last lines, then only what is new
                text = core_api.read_namespaced_pod_log(pod, namespace, timestamps=True, tail_lines=FOLLOW_TAIL)
            else:
                seen_at = _key_epoch(since)
                back = max(window_s, now - seen_at + window_s) if seen_at else window_s
                text = core_api.read_namespaced_pod_log(pod, namespace, timestamps=True, since_seconds=math.ceil(back))
        except Exception as e:
            if getattr(e, "status", None) in (400, 404):
                continue
            raise EndpointError(f"pod {namespace}/{pod}: cannot read its log: {_short(e)}") from e
        for line in text.splitlines():
            stamp, rest = split_stamp(line)
            if stamp <= (since if since is not None else floor or ""):
                continue
            last[pod] = stamp
            out.append((pod, rest))
    return out


def follow_pod_logs(
    core_api: Any,
    namespace: str,
    label_selector: str,
    *,
    stop: Callable[[], bool] | None = None,
    poll_s: float = LOG_POLL_S,
    after: float | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield new ``(pod, line)`` pairs, polling every ``poll_s`` seconds; pods that appear later are followed too
    (each look is one :func:`poll_pod_logs`).

    ``after``: epoch seconds; lines stamped at or before it are skipped (see :meth:`Workspace.follow_logs`).
    """
    last: dict[str, str] = {}
    floor = epoch_key(after) if after is not None else None
    while stop is None or not stop():
        yield from poll_pod_logs(core_api, namespace, label_selector, last, floor=floor, window_s=int(poll_s * 5) + 5)
        time.sleep(poll_s)


def _stamp_key(stamp: str) -> str:
    """An RFC 3339 timestamp that sorts as text: the fraction padded to nanoseconds (the API trims its zeros)."""
    head, dot, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{frac.ljust(9, '0')}" if dot else f"{head}.000000000"


def epoch_key(epoch: float) -> str:
    """Epoch seconds as :func:`_stamp_key` writes a timestamp (UTC, nanoseconds)."""
    second = int(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{int((epoch - second) * 1e9):09d}"


def _key_epoch(key: str) -> float:
    """The epoch seconds of a stamp as :func:`_stamp_key` writes it (0 for one that does not parse)."""
    head, _, frac = key.partition(".")
    try:
        return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")
    except ValueError:
        return 0.0


def _short(e: BaseException) -> str:
    """An error in a line or so: the Kubernetes API's status message when it is one, else its last lines."""
    status, body = getattr(e, "status", None), getattr(e, "body", None)
    if isinstance(status, int) and body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return f"the API server answered {status}: {message}"
    text = str(e).strip().splitlines()
    tail = [line for line in text if line.strip()][-3:]
    return " / ".join(tail) or type(e).__name__
