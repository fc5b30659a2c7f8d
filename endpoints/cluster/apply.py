"""Objects to and from the API server with the ``kubernetes`` client: server-side apply, dry runs, waits.

Every write is a server-side apply (``PATCH application/apply-patch+yaml``) with ``fieldValidation=Strict``, so an
unknown field is an error rather than silently pruned, exactly as ``kubectl apply --server-side`` does it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIELD_MANAGER = "ml-endpoints"


def dynamic_client(kubeconfig: Path, cache_dir: Path | None = None) -> Any:
    """A ``kubernetes.dynamic.DynamicClient`` for ``kubeconfig``.

    Args:
        kubeconfig: The kubeconfig file.
        cache_dir: Where discovery is cached (default beside the kubeconfig): a fresh cluster on the same address
            must not read another cluster's cache.
    """
    from kubernetes import config, dynamic

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    cache = (cache_dir or kubeconfig.parent) / f"{kubeconfig.stem}.discovery.json"
    return dynamic.DynamicClient(api_client, cache_file=str(cache))


def resource_for(client: Any, obj: dict[str, Any]) -> Any:
    """The API resource of ``obj``'s apiVersion and kind (discovery refreshed once when unknown: a new CRD)."""
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        return client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    except ResourceNotFoundError:
        client.resources.invalidate_cache()
        return client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])


def apply(client: Any, obj: dict[str, Any], *, dry_run: bool = False) -> Any:
    """Server-side apply ``obj`` (``dryRun=All`` when ``dry_run``); returns the object as the server has it.

    Raises:
        kubernetes.client.exceptions.ApiException: the server refused it (the body says why).
    """
    resource = resource_for(client, obj)
    meta = obj.get("metadata") or {}
    return client.server_side_apply(
        resource,
        body=obj,
        name=meta.get("name"),
        namespace=meta.get("namespace") if resource.namespaced else None,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        dry_run="All" if dry_run else None,
        query_params=[("fieldValidation", "Strict")],
    )


@dataclass(frozen=True)
class Rejection:
    """One object the API server refused."""

    ref: str
    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.ref}: HTTP {self.status}: {self.message}"


def ref(obj: dict[str, Any]) -> str:
    """``Kind namespace/name`` of an object (for messages)."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def dry_run_all(client: Any, objects: Iterable[dict[str, Any]]) -> list[Rejection]:
    """Server-side dry-run apply of each object; the ones refused, with the server's message (a kind the server does
    not serve, e.g. a CRD not installed, is refused with status 404)."""
    import json

    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    rejected = []
    for obj in objects:
        try:
            apply(client, obj, dry_run=True)
        except ResourceNotFoundError:
            message = f"the server serves no kind {obj.get('kind')!r} in {obj.get('apiVersion')!r} (CRD not installed?)"
            rejected.append(Rejection(ref(obj), 404, message))
        except ApiException as e:
            try:
                message = json.loads(e.body or "{}").get("message", e.body)
            except (TypeError, ValueError):
                message = str(e.body)
            rejected.append(Rejection(ref(obj), int(e.status or 0), str(message)))
    return rejected


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> None:
    """Poll ``check`` until it is true.

    Raises:
        TimeoutError: not true within ``timeout_s``; the message names ``what``.
    """
    from endpoints.cluster import ClusterError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            if check():
                return
        except ClusterError:
            raise
        except Exception as e:  # not there yet (connection refused, 404): poll again
            last = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last is not None else ""
            raise TimeoutError(f"{what}: not done within {timeout_s:.0f} s{detail}") from last
        time.sleep(interval_s)


def crd_established(client: Any, name: str) -> bool:
    """Whether the CustomResourceDefinition ``name`` is Established (its kind can be created)."""
    crds = client.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crd = crds.get(name=name).to_dict()
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
