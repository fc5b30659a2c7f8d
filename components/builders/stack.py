"""The one walk over a resolved stack, and the whole stack rendered as Kubernetes objects (the offline plan).

:func:`walk_stack` lists what a stack is made of, in creation order: its namespace, compute pools, batch platform,
and every endpoint and deployment. The Pulumi program (``stacks/__main__.py``) turns each unit into its component;
:func:`render_stack` turns each into the objects that component creates, with the same builders, so the plan shows
exactly what ``pulumi up`` would create. Configuration: :mod:`components.builders.stack_config`; resolution of the
endpoint folders: :mod:`components.builders.stack_resolve`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.builders.batch_job import (
    build_job_template,
    build_runner_egress_policy,
    build_template_config_map,
    templates_hash,
)
from components.builders.batch_job_api import (
    build_job_api_egress_policy,
    build_job_api_ingress_policy,
    build_job_api_objects,
    build_job_api_pdb,
    build_job_api_route,
    jobs_uri,
)
from components.builders.batch_options import BatchOptions, build_batch_volume_claim
from components.builders.batch_queues import batch_flavor_name, build_batch_platform_objects, build_endpoint_local_queue
from components.builders.common import ClusterSettings
from components.builders.compute import build_gpu_quota, build_resource_flavor
from components.builders.keys import build_keys_secret
from components.builders.namespace import build_default_deny, build_namespace
from components.builders.online import build_deployment_objects, build_endpoint_objects, scoring_uri, swagger_uri
from components.builders.stack_config import PROJECT_NAME, StackSettings
from components.builders.stack_resolve import (
    ResolvedBatchDeployment,
    ResolvedBatchEndpoint,
    ResolvedDeployment,
    ResolvedEndpoint,
    ResolvedStack,
    base_image_notes,
    compute_pools,
    resolve_stack,
)
from endpoints.catalog import InstanceType
from endpoints.errors import SpecError
from endpoints.images import ImageBuild


@dataclass(frozen=True)
class StackNamespace:
    """The stack's namespace (when the stack creates it)."""

    namespace: str
    owner: str = "the stack"


@dataclass(frozen=True)
class StackPool:
    """A compute pool the stack creates a ``ComputePool`` for (a GPU pool, a batch pool, or both).

    Attributes:
        kueue_flavor: Name of the pool's Kueue ResourceFlavor when batch jobs run there, else None.
    """

    pool: str
    instances: list[InstanceType]
    kueue_flavor: str | None

    @property
    def owner(self) -> str:
        return f"pool {self.pool}"


@dataclass(frozen=True)
class StackBatchPlatform:
    """The stack-wide batch pieces (queues, priority classes, volume, job API and runner images)."""

    resolved: ResolvedStack
    owner: str = "the stack's batch platform"


@dataclass(frozen=True)
class StackOnlineEndpoint:
    """An online endpoint (before its deployments)."""

    endpoint: ResolvedEndpoint

    @property
    def owner(self) -> str:
        return f"online endpoint {self.endpoint.endpoint.name!r} ({self.endpoint.entry})"


@dataclass(frozen=True)
class StackOnlineDeployment:
    """One deployment of an online endpoint."""

    endpoint: ResolvedEndpoint
    deployment: ResolvedDeployment

    @property
    def owner(self) -> str:
        return StackOnlineEndpoint(self.endpoint).owner


@dataclass(frozen=True)
class StackBatchDeployment:
    """One deployment of a batch endpoint (its Job template)."""

    endpoint: ResolvedBatchEndpoint
    deployment: ResolvedBatchDeployment

    @property
    def owner(self) -> str:
        return StackBatchEndpoint(self.endpoint).owner


@dataclass(frozen=True)
class StackBatchEndpoint:
    """A batch endpoint (after its deployments: its job API carries the hash of their templates)."""

    endpoint: ResolvedBatchEndpoint

    @property
    def owner(self) -> str:
        return f"batch endpoint {self.endpoint.endpoint.name!r} ({self.endpoint.entry})"


StackUnit = (
    StackNamespace
    | StackPool
    | StackBatchPlatform
    | StackOnlineEndpoint
    | StackOnlineDeployment
    | StackBatchDeployment
    | StackBatchEndpoint
)


def walk_stack(settings: StackSettings, resolved: ResolvedStack) -> Iterator[StackUnit]:
    """Every unit of the stack, in creation order: what the program creates and the plan renders."""
    if settings.create_namespace:
        yield StackNamespace(settings.namespace)
    for pool, (instances, kueue) in compute_pools(resolved).items():
        yield StackPool(pool, instances, batch_flavor_name(settings.namespace, pool) if kueue else None)
    if resolved.batch:
        yield StackBatchPlatform(resolved)
    for r in resolved.online:
        yield StackOnlineEndpoint(r)
        for d in r.deployments:
            yield StackOnlineDeployment(r, d)
    for b in resolved.batch:
        for bd in b.deployments:
            yield StackBatchDeployment(b, bd)
        yield StackBatchEndpoint(b)


@dataclass
class RenderedStack:
    """Every object the stack creates (secrets as placeholders) and the endpoints' URIs."""

    objects: list[dict[str, Any]]
    scoring_uris: dict[str, str]
    swagger_uris: dict[str, str]
    jobs_uris: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def placeholder_image(build: ImageBuild) -> str:
    """Image reference shown in the offline plan for an image that ``pulumi up`` would build."""
    return f"{build.repository}:built-by-pulumi"


def _image(image: str | None, build: ImageBuild | None) -> str:
    if image is not None:
        return image
    assert build is not None
    return placeholder_image(build)


def batch_template_config_map(
    r: ResolvedBatchEndpoint, d: ResolvedBatchDeployment, cluster: ClusterSettings, options: BatchOptions, image: str
) -> dict[str, Any]:
    """The Job template ConfigMap of one batch deployment (what ``BatchDeployment`` creates)."""
    template = build_job_template(r.endpoint, d.spec, d.instance, cluster, image, options)
    return build_template_config_map(r.endpoint, d.spec, template, cluster)


def batch_endpoint_objects(
    b: ResolvedBatchEndpoint, cluster: ClusterSettings, options: BatchOptions, image: Any, hash_: Any
) -> list[dict[str, Any]]:
    """Every object a ``BatchEndpoint`` creates, keys as placeholders (the offline plan's view)."""
    objs = [build_keys_secret(b.endpoint, cluster)]
    objs += build_job_api_objects(b.endpoint, b.deployment_names, cluster, image, options, b.job_api_replicas, hash_)
    objs += [
        build_job_api_pdb(b.endpoint, cluster),
        build_job_api_route(b.endpoint, cluster, b.private),
        build_job_api_ingress_policy(b.endpoint, cluster, b.private),
        build_job_api_egress_policy(b.endpoint, cluster),
        build_runner_egress_policy(b.endpoint, cluster),
        build_endpoint_local_queue(b.endpoint, cluster, options),
    ]
    return objs


def _render(settings: StackSettings, resolved: ResolvedStack) -> list[tuple[str, dict[str, Any]]]:
    """(owner, object) for every object of the stack, unit by unit of :func:`walk_stack`."""
    cluster = settings.cluster()
    out: list[tuple[str, dict[str, Any]]] = []
    templates: dict[str, list[dict[str, Any]]] = {}  # batch endpoint -> its deployments' template ConfigMaps
    for unit in walk_stack(settings, resolved):
        objs: list[dict[str, Any]]
        match unit:
            case StackNamespace(namespace=namespace):
                objs = [build_namespace(namespace), build_default_deny(namespace)]
            case StackPool(pool=pool, instances=instances, kueue_flavor=flavor):
                reference = max(instances, key=lambda it: it.gpu_count)
                objs = []
                if settings.gpu_quota and reference.is_gpu:
                    objs.append(build_gpu_quota(pool, settings.namespace, settings.gpu_quota))
                if flavor is not None:
                    objs.append(build_resource_flavor(pool, reference, cluster, flavor))
            case StackBatchPlatform():
                objs = build_batch_platform_objects(
                    settings.namespace, resolved.batch_quotas, settings.create_priority_classes
                )
                objs.append(build_batch_volume_claim(settings.namespace, resolved.options))
            case StackOnlineEndpoint(endpoint=r):
                objs = build_endpoint_objects(r.endpoint, r.specs, cluster)
            case StackOnlineDeployment(endpoint=r, deployment=d):
                objs = build_deployment_objects(r.endpoint, d.spec, d.instance, cluster, _image(d.image, d.build))
            case StackBatchDeployment(endpoint=b, deployment=bd):
                image = _image(bd.image, bd.build)
                objs = [batch_template_config_map(b, bd, cluster, resolved.options, image)]
                templates.setdefault(b.endpoint.name, []).extend(objs)
            case StackBatchEndpoint(endpoint=b):
                api_image = _image(resolved.job_api_image, resolved.job_api_build)
                hash_ = templates_hash(templates.get(b.endpoint.name, []))
                objs = batch_endpoint_objects(b, cluster, resolved.options, api_image, hash_)
        out += [(unit.owner, o) for o in objs]
    return out


def check_names(settings: StackSettings, resolved: ResolvedStack) -> None:
    """Refuse a stack in which two objects of the same kind would share a name.

    Online and batch objects share the namespace: two of one kind and name would overwrite each other on the
    cluster (e.g. online "cars" deployment "x-jobs" and batch "cars-x"'s job API "cars-x-jobs"). The program calls
    this before creating anything; :func:`render_stack` checks its own rendering.

    Raises:
        SpecError: naming the object and both owners.
    """
    _check_object_names(_render(settings, resolved))


def _check_object_names(owned: list[tuple[str, dict[str, Any]]]) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for owner, obj in owned:
        meta = obj["metadata"]
        key = (str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))
        if key in seen:
            where = f"{key[0]} {key[1]}/{key[2]}" if key[1] else f"{key[0]} {key[2]}"
            by = f"twice by {owner}" if seen[key] == owner else f"by both {seen[key]} and {owner}"
            raise SpecError(
                f"{PROJECT_NAME}:endpoints: {where} would be created {by}; rename one of the endpoints or deployments"
            )
        seen[key] = owner


def render_stack(settings: StackSettings, repo_root: Path) -> RenderedStack:
    """Render the whole stack offline with the same builders the components call (keys are placeholders)."""
    resolved = resolve_stack(settings, repo_root)
    cluster = settings.cluster()
    owned = _render(settings, resolved)
    _check_object_names(owned)
    objs = [o for _, o in owned]
    scoring = {r.endpoint.name: scoring_uri(r.endpoint, r.specs, cluster) for r in resolved.online}
    swagger = {r.endpoint.name: swagger_uri(r.endpoint, r.specs, cluster) for r in resolved.online}
    jobs = {b.endpoint.name: jobs_uri(b.endpoint, cluster) for b in resolved.batch}
    return RenderedStack(objs, scoring, swagger, jobs, base_image_notes(resolved, settings))
