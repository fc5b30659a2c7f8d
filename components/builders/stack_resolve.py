"""A stack's endpoint folders resolved into specs: the stack's overrides applied, images chosen, batch quotas set.

Engine-free and pure like the other builders; :func:`resolve_stack` is what both the Pulumi program and the offline
plan start from (through the one walk of :mod:`components.builders.stack`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from components.builders.batch_options import BatchOptions, batch_instance_type
from components.builders.batch_queues import batch_cluster_queue_name, default_pool_quota, parse_quantity
from components.builders.byoc import is_custom_server
from components.builders.common import remote_model_uri
from components.builders.compute import GPU_RESOURCE, pools_of
from components.builders.image import (
    batch_base_image_build,
    batch_deployment_build,
    custom_base_build,
    custom_runner_build,
    image_build_args,
)
from components.builders.online import check_unique_names
from components.builders.stack_config import (
    PROJECT_NAME,
    DeploymentOverride,
    EndpointOverride,
    KeyRotation,
    StackSettings,
)
from endpoints.catalog import InstanceType
from endpoints.errors import SpecError
from endpoints.images import ImageBuild, redirect_base_image, user_base_image
from endpoints.project import EndpointProject, load_endpoint_project
from endpoints.specs import BatchDeployment, BatchEndpoint, ModelAsset, OnlineDeployment, OnlineEndpoint


@dataclass
class ResolvedDeployment:
    """One online deployment with the stack's overrides applied."""

    spec: OnlineDeployment
    instance: InstanceType
    deployment_file: Path
    image: str | None
    build: ImageBuild | None


@dataclass
class ResolvedEndpoint:
    """One online endpoint with the stack's overrides applied, ready for the builders/components."""

    entry: str
    project: EndpointProject
    endpoint: OnlineEndpoint
    deployments: list[ResolvedDeployment]
    rotation: KeyRotation = field(default_factory=KeyRotation)

    @property
    def specs(self) -> list[OnlineDeployment]:
        """The deployment specs (name order)."""
        return [d.spec for d in self.deployments]


@dataclass
class ResolvedBatchDeployment:
    """One batch deployment with the stack's overrides applied.

    Attributes:
        image: A pinned runner image, or None when ``build`` makes it.
        build: The deployment image's build; its ``BASE_IMAGE`` is the stack's runner image, which is
            :data:`RUNNER_IMAGE_PLACEHOLDER` when the stack builds the runner image too (the program puts the
            built image's digest there).
    """

    spec: BatchDeployment
    instance: InstanceType
    deployment_file: Path
    image: str | None
    build: ImageBuild | None


@dataclass
class ResolvedBatchEndpoint:
    """One batch endpoint with the stack's overrides applied."""

    entry: str
    project: EndpointProject
    endpoint: BatchEndpoint
    deployments: list[ResolvedBatchDeployment]
    job_api_replicas: int
    private: bool
    rotation: KeyRotation = field(default_factory=KeyRotation)

    @property
    def deployment_names(self) -> list[str]:
        """The deployment names (name order)."""
        return [d.spec.name for d in self.deployments]


# BASE_IMAGE of batch deployment builds while the runner image is itself built by the same `pulumi up`.
RUNNER_IMAGE_PLACEHOLDER = "<batch-runner-image>"


@dataclass
class ResolvedStack:
    """Every endpoint of a stack, resolved, plus the stack-wide batch pieces.

    Attributes:
        online: Online endpoints, in config order.
        batch: Batch endpoints, in config order.
        job_api_image: Pinned job API image (None: ``job_api_build`` makes it, or no batch endpoint).
        job_api_build: Build of the job API image (``serving/Dockerfile.batch`` target ``job-api``).
        runner_image: Pinned batch runner image (None: ``runner_build`` makes it, or no deployment needs it).
        runner_build: Build of the batch runner image (``serving/Dockerfile.batch`` target ``runner``).
        batch_quotas: Pool -> nominal quota of the stack's ClusterQueue (pools of the batch deployments).
        options: Batch queue/volume options of the stack.
    """

    online: list[ResolvedEndpoint]
    batch: list[ResolvedBatchEndpoint]
    job_api_image: str | None = None
    job_api_build: ImageBuild | None = None
    runner_image: str | None = None
    runner_build: ImageBuild | None = None
    batch_quotas: dict[str, dict[str, str]] = field(default_factory=dict)
    options: BatchOptions = field(default_factory=BatchOptions)

    def batch_pools(self) -> dict[str, list[InstanceType]]:
        """Pools the batch deployments run in, by pool name."""
        return pools_of(d.instance for r in self.batch for d in r.deployments)


def _revalidate(model: type[Any], spec: Any, update: dict[str, Any], where: str, catalog: Any) -> Any:
    data = spec.model_dump(by_alias=True, exclude_none=False, exclude={"kind"})
    data.update(update)
    try:
        out = model.model_validate(data, context={"catalog": catalog})
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise SpecError(f"{where}: the stack's overrides make the spec invalid: {msgs}") from e
    out._source_path = spec.source_path
    return out


def _apply_deployment_override(
    spec: OnlineDeployment, ov: DeploymentOverride, where: str, catalog: Any
) -> OnlineDeployment:
    update: dict[str, Any] = {}
    if ov.instance_count is not None:
        update["instance_count"] = ov.instance_count
    if ov.instance_type is not None:
        update["instance_type"] = ov.instance_type
    if ov.egress_public_network_access is not None:
        update["egress_public_network_access"] = ov.egress_public_network_access
    if ov.environment_variables:
        update["environment_variables"] = {**spec.environment_variables, **ov.environment_variables}
    if ov.autoscale is not None:
        # On our clusters a managed deployment is a kubernetes one; Azure allows target_utilization only there.
        update["type"] = "kubernetes"
        update["scale_settings"] = {"type": "target_utilization", **ov.autoscale.model_dump()}
    if ov.model_path is not None or ov.model_version is not None:
        update["model"] = _overridden_model(spec.name, spec.model, ov, where)
    return _revalidate(OnlineDeployment, spec, update, where, catalog) if update else spec


def _overridden_model(name: str, model: Any, ov: DeploymentOverride, where: str) -> dict[str, Any]:
    """The deployment's inline model with the stack's modelPath/modelVersion applied (online and batch alike)."""
    if not isinstance(model, ModelAsset):
        raise SpecError(f"{where}: modelPath/modelVersion: deployment {name!r} has no inline model to override")
    m = model.model_dump(by_alias=True)
    if ov.model_path is not None:
        m["path"] = ov.model_path
    if ov.model_version is not None:
        m["version"] = ov.model_version
    return m


def _apply_batch_override(spec: BatchDeployment, ov: DeploymentOverride, where: str, catalog: Any) -> BatchDeployment:
    for key, value in (("egressPublicNetworkAccess", ov.egress_public_network_access), ("autoscale", ov.autoscale)):
        if value is not None:
            raise SpecError(f"{where}.{key}: got {value!r}; batch deployments take no {key} (online only)")
    update: dict[str, Any] = {}
    if ov.instance_count is not None:
        update["resources"] = {"instance_count": ov.instance_count}
    if ov.instance_type is not None:
        update["instance_type"] = ov.instance_type
    if ov.environment_variables:
        settings = spec.settings.model_dump(by_alias=True)
        settings["environment_variables"] = {**spec.settings.environment_variables, **ov.environment_variables}
        update["settings"] = settings
    if ov.model_path is not None or ov.model_version is not None:
        update["model"] = _overridden_model(spec.name, spec.model, ov, where)
    return _revalidate(BatchDeployment, spec, update, where, catalog) if update else spec


def _load_project(repo_root: Path, entry: str) -> EndpointProject:
    path = repo_root / entry
    if path.suffix in (".yml", ".yaml"):
        return load_endpoint_project(path.parent, path.name)
    return load_endpoint_project(path)


def resolve_stack(settings: StackSettings, repo_root: Path) -> ResolvedStack:
    """Load every endpoint folder of the stack (online and batch) and apply its overrides.

    Args:
        settings: The stack's settings.
        repo_root: The Pulumi project folder (endpoint folders are relative to it).

    Raises:
        SpecError: a folder is invalid, an override names an unknown endpoint or deployment, two endpoints share a
            name (naming both folders and their kinds), a deployment has no image, or a batch deployment has no
            instance type of its pool. (Two objects of one name: :func:`components.builders.stack.check_names`.)
    """
    seen: dict[str, tuple[str, str]] = {}
    projects: list[tuple[str, EndpointProject]] = []
    for entry in settings.endpoints:
        project = _load_project(repo_root, entry)
        endpoint = project.endpoint
        kind = "batch" if isinstance(endpoint, BatchEndpoint) else "online"
        if endpoint.name in seen:
            other, other_kind = seen[endpoint.name]
            if other_kind == kind:
                raise SpecError(
                    f"{PROJECT_NAME}:endpoints: {entry!r} and {other!r} both define endpoint {endpoint.name!r};"
                    " endpoint names are unique in a stack"
                )
            raise SpecError(
                f"{PROJECT_NAME}:endpoints: {entry!r} ({kind} endpoint) and {other!r} ({other_kind} endpoint) both"
                f" define endpoint {endpoint.name!r}; an online and a batch endpoint cannot share a name in a stack"
                f" (both would be served at {endpoint.name.lower()}.{settings.domain}): rename one"
            )
        seen[endpoint.name] = (entry, kind)
        projects.append((entry, project))
    # An override naming no endpoint of the stack (a typo) is refused before any endpoint is resolved: resolving the
    # endpoint it meant to override would fail on what the override was there to set (a pinned image) and hide it.
    for name in sorted(settings.overrides):
        if name not in seen:
            raise SpecError(f"{PROJECT_NAME}:overrides.{name}: no such endpoint in this stack; known: {sorted(seen)}")
    online: list[ResolvedEndpoint] = []
    batch: list[ResolvedBatchEndpoint] = []
    for entry, project in projects:
        endpoint = project.endpoint
        if isinstance(endpoint, BatchEndpoint):
            batch.append(_resolve_batch(settings, repo_root, entry, project, endpoint))
        else:
            online.append(_resolve_online(settings, repo_root, entry, project, endpoint))
    check_unique_names([(r.endpoint.name, d.spec.name) for r in online for d in r.deployments])
    resolved = ResolvedStack(online, batch)
    if batch:
        _resolve_batch_platform(settings, repo_root, resolved)
    return resolved


def _check_override_names(ov: EndpointOverride, project: EndpointProject, where: str) -> None:
    """Every deployment named under the endpoint's overrides exists in its project."""
    for dep_name in ov.deployments:
        if dep_name not in project.deployments:
            raise SpecError(f"{where}.deployments.{dep_name}: no such deployment; known: {sorted(project.deployments)}")


def _resolve_online(
    settings: StackSettings, repo_root: Path, entry: str, project: EndpointProject, endpoint: OnlineEndpoint
) -> ResolvedEndpoint:
    where = f"{PROJECT_NAME}:overrides.{endpoint.name}"
    ov = settings.overrides.get(endpoint.name, EndpointOverride())
    if ov.job_api_replicas is not None:
        raise SpecError(
            f"{where}.jobApiReplicas: got {ov.job_api_replicas}; {endpoint.name!r} is an online endpoint (set"
            " instanceCount or autoscale of its deployments)"
        )
    _check_override_names(ov, project, where)
    ep_update: dict[str, Any] = {}
    if ov.traffic is not None:
        ep_update["traffic"] = ov.traffic
    if ov.mirror_traffic is not None:
        ep_update["mirror_traffic"] = ov.mirror_traffic
    if settings.public_network_access:
        ep_update["public_network_access"] = settings.public_network_access
    if ep_update:
        endpoint = _revalidate(OnlineEndpoint, endpoint, ep_update, where, project.catalog)
    deployments: list[ResolvedDeployment] = []
    for name in sorted(project.deployments):
        spec = project.deployments[name]
        assert isinstance(spec, OnlineDeployment)
        dov = ov.deployments.get(name, DeploymentOverride())
        spec = _apply_deployment_override(spec, dov, f"{where}.deployments.{name}", project.catalog)
        instance = project.catalog.get(spec.effective_instance_type)
        dep_file = project.deployment_file(name)
        image, build = _image_of(settings, repo_root, project, dep_file, endpoint.name, spec, dov, where)
        deployments.append(ResolvedDeployment(spec, instance, dep_file, image, build))
    for table in ("traffic", "mirror_traffic"):
        for target in getattr(endpoint, table):
            if target not in project.deployments:
                raise SpecError(f"{where}.{table}.{target}: no such deployment; known: {sorted(project.deployments)}")
    rotation = settings.key_rotation.get(endpoint.name, KeyRotation())
    return ResolvedEndpoint(entry, project, endpoint, deployments, rotation)


def _resolve_batch(
    settings: StackSettings, repo_root: Path, entry: str, project: EndpointProject, endpoint: BatchEndpoint
) -> ResolvedBatchEndpoint:
    where = f"{PROJECT_NAME}:overrides.{endpoint.name}"
    ov = settings.overrides.get(endpoint.name, EndpointOverride())
    for key, value in (("traffic", ov.traffic), ("mirrorTraffic", ov.mirror_traffic)):
        if value is not None:
            raise SpecError(
                f"{where}.{key}: got {value!r}; {endpoint.name!r} is a batch endpoint (each job names its"
                " deployment, else the endpoint's defaults.deployment_name)"
            )
    _check_override_names(ov, project, where)
    deployments: list[ResolvedBatchDeployment] = []
    for name in sorted(project.deployments):
        spec = project.deployments[name]
        assert isinstance(spec, BatchDeployment)
        dov = ov.deployments.get(name, DeploymentOverride())
        dwhere = f"{where}.deployments.{name}"
        spec = _apply_batch_override(spec, dov, dwhere, project.catalog)
        instance = batch_instance_type(spec, project.catalog, settings.batch_instance_type)
        dep_file = project.deployment_file(name)
        image: str | None = dov.image
        build: ImageBuild | None = None
        if image is None:
            if not settings.build_images:
                raise SpecError(
                    f"{dwhere}.image: missing; batch deployment {name!r} needs a pinned image in this stack (or set"
                    f" {PROJECT_NAME}:buildImages: true)"
                )
            target = _base_image_target(settings, spec)
            if target is not None:
                # environment.image honoured as online: serving layer, then the runner, then the deployment.
                runner_build = custom_runner_build(repo_root, target, endpoint.name, name, settings.image_registry)
                build = batch_deployment_build(
                    repo_root, dep_file, spec, endpoint.name, "<custom-runner>", settings.image_registry
                )
                build = replace(build, base=runner_build)
            else:
                runner = settings.batch_runner_image or RUNNER_IMAGE_PLACEHOLDER
                build = batch_deployment_build(
                    repo_root, dep_file, spec, endpoint.name, runner, settings.image_registry
                )
        deployments.append(ResolvedBatchDeployment(spec, instance, dep_file, image, build))
    if endpoint.defaults.deployment_name and endpoint.defaults.deployment_name not in project.deployments:
        raise SpecError(
            f"{project.endpoint_file}: defaults.deployment_name: got {endpoint.defaults.deployment_name!r}; known:"
            f" {sorted(project.deployments)}"
        )
    replicas = ov.job_api_replicas or settings.batch_job_api_replicas
    rotation = settings.key_rotation.get(endpoint.name, KeyRotation())
    private = settings.public_network_access == "disabled"
    return ResolvedBatchEndpoint(entry, project, endpoint, deployments, replicas, private, rotation)


def _check_quota(pool: str, quota: dict[str, str], jobs: list[tuple[str, ResolvedBatchDeployment]]) -> None:
    """A configured quota must admit one job of every deployment of the pool, else that job queues forever."""
    where = f"{PROJECT_NAME}:batchQuotas.{pool}"
    known = ("cpu", "memory", GPU_RESOURCE)
    for resource, value in quota.items():
        if resource not in known:
            raise SpecError(f"{where}.{resource}: unknown resource; known: {list(known)}")
        try:
            parse_quantity(value)
        except ValueError as e:
            raise SpecError(f"{where}.{resource}: {e}") from None
    for endpoint_name, d in jobs:
        count = d.spec.resources.instance_count
        need = default_pool_quota([(d.instance, count)])
        for resource, amount in need.items():
            have = quota.get(resource, "0")
            if parse_quantity(have) < parse_quantity(amount):
                raise SpecError(
                    f"{where}.{resource}: got {have!r}; one job of batch deployment {endpoint_name}/{d.spec.name}"
                    f" needs {amount} ({count} x {d.instance.name}) and would wait in the queue forever"
                )


def _resolve_batch_platform(settings: StackSettings, repo_root: Path, resolved: ResolvedStack) -> None:
    """Job API and runner images, ClusterQueue quotas and queue options of a stack with batch endpoints."""

    def build_of(target: Literal["job-api", "runner"], key: str) -> ImageBuild:
        if not settings.build_images:
            raise SpecError(
                f"{PROJECT_NAME}:{key}: missing; the stack's batch endpoints need a pinned image (or set"
                f" {PROJECT_NAME}:buildImages: true)"
            )
        if not settings.serving_image:
            raise SpecError(
                f"{PROJECT_NAME}:servingImage: missing; buildImages needs the serving base image to build the batch"
                f" {target} image on"
            )
        return batch_base_image_build(repo_root, target, settings.serving_image, settings.image_registry)

    if settings.job_api_image:
        resolved.job_api_image = settings.job_api_image
    else:
        resolved.job_api_build = build_of("job-api", "jobApiImage")
    # The stack's runner image: the base of every built batch deployment image that does not bring its own.
    if any(d.build is not None and d.build.base is None for r in resolved.batch for d in r.deployments):
        if settings.batch_runner_image:
            resolved.runner_image = settings.batch_runner_image
        else:
            resolved.runner_build = build_of("runner", "batchRunnerImage")
    pools = resolved.batch_pools()
    unknown = sorted(set(settings.batch_quotas) - set(pools))
    if unknown:
        raise SpecError(
            f"{PROJECT_NAME}:batchQuotas.{unknown[0]}: no batch deployment of this stack runs in pool"
            f" {unknown[0]!r}; pools: {sorted(pools)}"
        )
    for pool in pools:
        jobs = [(r.endpoint.name, d) for r in resolved.batch for d in r.deployments if d.instance.pool == pool]
        configured = settings.batch_quotas.get(pool)
        if configured:
            _check_quota(pool, configured, jobs)
        default = default_pool_quota([(d.instance, d.spec.resources.instance_count) for _, d in jobs])
        resolved.batch_quotas[pool] = dict(configured or default)
    resolved.options = BatchOptions(
        cluster_queue=batch_cluster_queue_name(settings.namespace),
        volume_size=settings.batch_volume_size,
        storage_class=settings.batch_storage_class or None,
    )


def _base_image_target(settings: StackSettings, spec: OnlineDeployment | BatchDeployment) -> str | None:
    """The image a deployment's image chain starts from: its ``environment.image`` after ``baseImageRedirects``;
    ``None`` when it names none or a redirect sends it to the serving image."""
    user_image = user_base_image(spec)
    return redirect_base_image(user_image, settings.base_image_redirects)[0] if user_image else None


def _image_of(
    settings: StackSettings,
    repo_root: Path,
    project: EndpointProject,
    dep_file: Path,
    endpoint_name: str,
    spec: OnlineDeployment,
    ov: DeploymentOverride,
    where: str,
) -> tuple[str | None, ImageBuild | None]:
    if ov.image:
        return ov.image, None
    if is_custom_server(spec):
        return _custom_server_image(settings, repo_root, project, dep_file, endpoint_name, spec, where)
    if settings.build_images:
        target = _base_image_target(settings, spec)
        if target is not None:
            # environment.image honoured: the serving layer on the user's image, then the deployment on that.
            base = custom_base_build(repo_root, target, endpoint_name, spec.name, settings.image_registry)
            build = image_build_args(
                repo_root, project.root, dep_file, spec, endpoint_name, "<custom-base>", settings.image_registry
            )
            return None, replace(build, base=base)
        if not settings.serving_image:
            raise SpecError(
                f"{PROJECT_NAME}:servingImage: missing; buildImages needs the serving base image to build on"
            )
        return None, image_build_args(
            repo_root, project.root, dep_file, spec, endpoint_name, settings.serving_image, settings.image_registry
        )
    raise SpecError(
        f"{where}.deployments.{spec.name}.image: missing; deployment {spec.name!r} needs a pinned image in this"
        f" stack (or set {PROJECT_NAME}:buildImages: true)"
    )


def _custom_server_image(
    settings: StackSettings,
    repo_root: Path,
    project: EndpointProject,
    dep_file: Path,
    endpoint_name: str,
    spec: OnlineDeployment,
    where: str,
) -> tuple[str | None, ImageBuild | None]:
    """The image of a custom container's or Triton's auth sidecar (components/builders/byoc.py): the serving image,
    or, when the deployment has a local model or scoring code, the serving image plus them (copied into the pod at
    start)."""
    model = spec.model
    local_model = model is not None and not isinstance(model, str) and remote_model_uri(spec) is None
    carried = [
        what for what, present in (("a local model", local_model), ("scoring code", spec.code_configuration)) if present
    ]
    if carried and not settings.build_images:
        raise SpecError(
            f"{where}.deployments.{spec.name}.image: missing; deployment {spec.name!r} has {' and '.join(carried)},"
            f" which {'travel' if len(carried) > 1 else 'travels'} in an image built on the serving image: pin one"
            f" here (or set {PROJECT_NAME}:buildImages: true)"
        )
    if not settings.serving_image:
        raise SpecError(
            f"{PROJECT_NAME}:servingImage: missing; deployment {endpoint_name}/{spec.name} runs a"
            f" {'Triton server' if spec.is_triton else 'custom container'} behind the serving image's auth proxy"
        )
    if not carried:
        return settings.serving_image, None
    # The model (AZUREML_MODEL_DIR) and the code (/var/azureml-app) in the serving image; the environment is the
    # user's container's, not installed here.
    carrier = spec.model_copy(update={"environment": None, "model": model if local_model else None})
    return None, image_build_args(
        repo_root, project.root, dep_file, carrier, endpoint_name, settings.serving_image, settings.image_registry
    )


def gpu_pools(resolved: ResolvedStack) -> dict[str, list[InstanceType]]:
    """GPU pools used by the stack's online and batch deployments, by pool name."""
    instances = [d.instance for r in resolved.online for d in r.deployments]
    instances += [d.instance for r in resolved.batch for d in r.deployments]
    return {pool: its for pool, its in pools_of(instances).items() if any(i.is_gpu for i in its)}


def compute_pools(resolved: ResolvedStack) -> dict[str, tuple[list[InstanceType], bool]]:
    """Pools the stack creates a ``ComputePool`` for: GPU pools (quota) and batch pools (Kueue ResourceFlavor).

    Returns:
        pool -> (its instance types, whether it carries a Kueue ResourceFlavor).
    """
    batch = resolved.batch_pools()
    gpu = gpu_pools(resolved)
    out: dict[str, tuple[list[InstanceType], bool]] = {}
    for pool in sorted(set(batch) | set(gpu)):
        instances = pools_of([*gpu.get(pool, []), *batch.get(pool, [])])[pool]
        out[pool] = (instances, pool in batch)
    return out


def base_image_notes(resolved: ResolvedStack, settings: StackSettings) -> list[str]:
    """What the stack does with each deployment's ``environment.image`` when it builds images (the plan shows
    these): built on as given, redirected by ``baseImageRedirects``, or replaced by the serving image (online) or
    the stack's batch runner image (batch)."""
    if not settings.build_images:
        return []
    builds: list[tuple[str, OnlineDeployment | BatchDeployment, ImageBuild | None, bool]] = []
    for r in resolved.online:
        builds += [(f"{r.endpoint.name}/{d.spec.name}", d.spec, d.build, False) for d in r.deployments]
    for b in resolved.batch:
        builds += [(f"{b.endpoint.name}/{d.spec.name}", d.spec, d.build, True) for d in b.deployments]
    out: list[str] = []
    for name, spec, build, batch in builds:
        image = user_base_image(spec)
        if image is None or build is None or (isinstance(spec, OnlineDeployment) and is_custom_server(spec)):
            continue
        target, prefix = redirect_base_image(image, settings.base_image_redirects)
        where = f"{name}: environment.image {image!r}"
        built = "the deployment image is built on it"
        if batch:
            built = "the batch runner and the deployment image are built on it"
        if prefix is None:
            out.append(f"{where}: {built} (serving layer added; python3 >= 3.11)")
        elif target is None:
            instead = "batch runner image" if batch else "serving image"
            out.append(
                f"{where}: built on the stack's {instead} instead ({PROJECT_NAME}:baseImageRedirects maps"
                f" {prefix!r} to 'serving')"
            )
        else:
            out.append(f"{where}: redirected to {target!r} ({PROJECT_NAME}:baseImageRedirects {prefix!r}); {built}")
    return out
