"""Stack configuration (typed), its resolution into specs, and the whole stack rendered as Kubernetes objects.

Pure like the other builders: the Pulumi program (``stacks/__main__.py``) reads the keys of :data:`CONFIG_KEYS`
with ``pulumi.Config`` and calls :func:`settings_from_config`; the offline plan reads the same keys from
``Pulumi.yaml`` + ``stacks/Pulumi.<stack>.yaml`` with :func:`load_stack_config` and calls :func:`render_stack`.
Both then go through :func:`resolve_stack`, so the plan shows exactly what ``pulumi up`` would create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from components.builders.batch import (
    DEFAULT_BATCH_INSTANCE_TYPE,
    BatchOptions,
    batch_cluster_queue_name,
    batch_flavor_name,
    batch_instance_type,
    build_batch_platform_objects,
    build_batch_volume_claim,
    build_endpoint_local_queue,
    build_job_api_ingress_policy,
    build_job_api_objects,
    build_job_api_pdb,
    build_job_api_route,
    build_job_template,
    build_template_config_map,
    default_pool_quota,
    jobs_uri,
    parse_quantity,
    templates_hash,
)
from components.builders.batch import build_keys_secret as build_batch_keys_secret
from components.builders.common import ClusterSettings, GatewayRef
from components.builders.compute import GPU_RESOURCE, build_gpu_quota, build_resource_flavor, pools_of
from components.builders.image import ImageBuild, batch_base_image_build, batch_deployment_build, image_build_args
from components.builders.namespace import build_default_deny, build_namespace
from components.builders.online import (
    build_deployment_objects,
    build_endpoint_objects,
    check_unique_names,
    scoring_uri,
    swagger_uri,
)
from endpoints.catalog import InstanceType
from endpoints.errors import SpecError
from endpoints.project import EndpointProject, load_endpoint_project
from endpoints.specs import BatchDeployment, BatchEndpoint, ModelAsset, OnlineDeployment, OnlineEndpoint

PROJECT_NAME = "ml-endpoints"


@dataclass(frozen=True)
class ConfigKey:
    """One stack config key as ``Pulumi.yaml`` declares it (``type`` None: an object, which Pulumi cannot type)."""

    type: Literal["string", "integer", "boolean", "array"] | None
    default: Any
    description: str


# Every stack config key (namespace ``ml-endpoints:``). Pulumi.yaml's `config:` section declares exactly these
# (a test keeps the two equal).
CONFIG_KEYS: dict[str, ConfigKey] = {
    "namespace": ConfigKey("string", "ml-endpoints", "Kubernetes namespace that holds every endpoint of this stack."),
    "createNamespace": ConfigKey(
        "boolean", True, "Create the namespace (Pod Security 'restricted' enforced, default-deny ingress)."
    ),
    "domain": ConfigKey("string", "endpoints.example.com", "DNS domain; an endpoint is served at <endpoint>.<domain>."),
    "endpoints": ConfigKey(
        "array",
        ["examples/car-classifier"],
        "Endpoint folders (relative to the repository root) deployed by this stack; 'folder/endpoint.mirror.yml'"
        " picks another endpoint file of the folder.",
    ),
    "publicGateway": ConfigKey(
        "string",
        "gateway-system/public",
        "Gateway (<namespace>/<name>) of endpoints with public_network_access enabled.",
    ),
    "privateGateway": ConfigKey(
        "string",
        "gateway-system/private",
        "Gateway (<namespace>/<name>, internal load balancer) of endpoints with public_network_access disabled.",
    ),
    "publicNetworkAccess": ConfigKey(
        "string", "", "Override every endpoint's public_network_access: '' (as the spec says), enabled or disabled."
    ),
    "keda": ConfigKey(
        "boolean", False, "Autoscale target_utilization deployments with KEDA ScaledObjects (CPU + request rate)."
    ),
    "kedaPrometheusUrl": ConfigKey(
        "string", "http://prometheus.monitoring.svc:9090", "Prometheus queried by KEDA's request-rate trigger."
    ),
    "kedaRequestsPerInstance": ConfigKey(
        "integer", 10, "Requests/s per instance that KEDA's request-rate trigger aims for."
    ),
    "egressAllowCidrs": ConfigKey(
        "array", [], "CIDRs still reachable by deployments with egress_public_network_access disabled (besides DNS)."
    ),
    "monitoringNamespace": ConfigKey("string", "", "Namespace allowed to scrape /metrics of endpoint pods ('' none)."),
    "poolLabel": ConfigKey("string", "ml-endpoints.io/pool", "Node label naming the compute pool of a node."),
    "pinCpuPools": ConfigKey("boolean", False, "Also pin CPU deployments to their pool's nodes (GPU ones always are)."),
    "gpuQuota": ConfigKey("integer", 0, "GPUs the namespace may request per GPU pool (ResourceQuota); 0: no quota."),
    "oidcIssuer": ConfigKey("string", "", "OIDC issuer for aad_token endpoints."),
    "oidcAudience": ConfigKey("string", "", "OIDC audience for aad_token endpoints."),
    "oidcJwksUrl": ConfigKey("string", "", "OIDC JWKS URL for aad_token endpoints."),
    "buildImages": ConfigKey(
        "boolean", False, "Build deployment images with pulumi-docker (else each needs a pinned image override)."
    ),
    "imageRegistry": ConfigKey("string", "", "Registry that built images are pushed to, e.g. registry.example.com/ml."),
    "servingImage": ConfigKey(
        "string", "", "Serving base image (built from serving/Dockerfile) that deployment images build on."
    ),
    "imagePullSecret": ConfigKey(
        "string", "", "docker-registry Secret (in the namespace) the pods pull private images with ('' none)."
    ),
    "serviceAccount": ConfigKey(
        "string",
        "",
        "Service account of the serving pods ('' the namespace default), e.g. one bound to a cloud identity that"
        " may read the model store.",
    ),
    "policyEnforcement": ConfigKey(
        "string", "advisory", "Policy pack enforcement level for this stack: advisory or mandatory."
    ),
    "batchInstanceType": ConfigKey(
        "string",
        DEFAULT_BATCH_INSTANCE_TYPE,
        "Instance type of batch deployments whose spec names none (Azure batch deployments name a compute"
        " cluster, not a VM size); it must run in the pool their compute names.",
    ),
    "batchJobApiReplicas": ConfigKey(
        "integer", 2, "Replicas of each batch endpoint's job API (overrides.<endpoint>.jobApiReplicas per endpoint)."
    ),
    "jobApiImage": ConfigKey(
        "string",
        "",
        "Batch job API image (serving/Dockerfile.batch --target job-api); '' builds it on servingImage (buildImages).",
    ),
    "batchRunnerImage": ConfigKey(
        "string",
        "",
        "Batch runner image (serving/Dockerfile.batch --target runner) that batch deployment images build on;"
        " '' builds it on servingImage (buildImages).",
    ),
    "batchVolumeSize": ConfigKey(
        "string", "100Gi", "Size of the stack's ReadWriteMany batch volume (every batch job's output)."
    ),
    "batchStorageClass": ConfigKey(
        "string", "", "Storage class of the batch volume ('' the cluster default; it must offer ReadWriteMany)."
    ),
    "batchQuotas": ConfigKey(
        None,
        {},
        "Object. Per compute pool: {cpu, memory, nvidia.com/gpu}, the nominal quota of the stack's Kueue"
        " ClusterQueue; a pool not listed gets room for its largest batch job.",
    ),
    "createPriorityClasses": ConfigKey(
        "boolean",
        True,
        "Create the cluster-scoped batch PriorityClasses (ml-endpoints-batch, ml-endpoints-batch-low); false in"
        " all but one stack sharing a cluster.",
    ),
    "overrides": ConfigKey(
        None,
        {},
        "Object. Per endpoint: {traffic, mirrorTraffic, jobApiReplicas, deployments: {<name>: {image,"
        " instanceCount, instanceType, modelPath, modelVersion, egressPublicNetworkAccess, environmentVariables,"
        " autoscale: {minInstances, maxInstances, targetUtilizationPercentage, pollingInterval}}}}; promotion"
        " edits these.",
    ),
    "keyRotation": ConfigKey(
        None,
        {},
        "Object. Per endpoint: {primary, secondary, tokenSigning}: changing one value regenerates only that key.",
    ),
}


class _Camel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Autoscale(_Camel):
    """Autoscaling of one deployment in this stack (Azure's kubernetes ``target_utilization`` scale settings)."""

    min_instances: int = Field(ge=1, le=1000, description="Fewest replicas.")
    max_instances: int = Field(ge=1, le=1000, description="Most replicas.")
    target_utilization_percentage: int = Field(default=70, ge=1, le=100, description="Target CPU %, default 70.")
    polling_interval: int = Field(default=1, ge=1, le=3600, description="Seconds between polls (KEDA), default 1.")


class DeploymentOverride(_Camel):
    """Stack-specific values of one deployment (what promotion copies between stacks)."""

    image: str | None = Field(default=None, min_length=1, description="Pinned image (registry/name@sha256:...).")
    instance_count: int | None = Field(default=None, ge=1, le=1000, description="Replicas in this stack.")
    instance_type: str | None = Field(default=None, min_length=1, description="Instance type in this stack.")
    model_path: str | None = Field(default=None, min_length=1, description="Model path or URI in this stack.")
    model_version: str | None = Field(default=None, min_length=1, description="Model version in this stack.")
    egress_public_network_access: Literal["enabled", "disabled"] | None = Field(
        default=None, description="Egress isolation in this stack."
    )
    environment_variables: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    autoscale: Autoscale | None = Field(
        default=None,
        description="Autoscale in this stack (the deployment is then scheduled as a kubernetes deployment with"
        " target_utilization scale settings: an HPA, or a KEDA ScaledObject when the stack enables KEDA).",
    )


class EndpointOverride(_Camel):
    """Stack-specific values of one endpoint."""

    traffic: dict[str, int] | None = Field(default=None, description="Live traffic split in this stack.")
    mirror_traffic: dict[str, int] | None = Field(default=None, description="Mirrored share in this stack.")
    job_api_replicas: int | None = Field(
        default=None, ge=1, le=100, description="Batch endpoints: job API replicas in this stack."
    )
    deployments: dict[str, DeploymentOverride] = Field(default_factory=dict, description="Per deployment.")


class KeyRotation(_Camel):
    """Rotation markers (Pulumi ``keepers``): change one to regenerate that key only."""

    primary: str = Field(default="0", description="Primary key generation.")
    secondary: str = Field(default="0", description="Secondary key generation.")
    token_signing: str = Field(default="0", description="Token signing key generation.")


class StackSettings(_Camel):
    """Every stack config key, typed (see :data:`CONFIG_KEYS` for meanings and defaults)."""

    namespace: str = Field(default="ml-endpoints", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    create_namespace: bool = True
    domain: str = Field(default="endpoints.example.com", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    endpoints: list[str] = Field(default_factory=lambda: ["examples/car-classifier"])
    public_gateway: str = "gateway-system/public"
    private_gateway: str = "gateway-system/private"
    public_network_access: Literal["", "enabled", "disabled"] = ""
    keda: bool = False
    keda_prometheus_url: str = "http://prometheus.monitoring.svc:9090"
    keda_requests_per_instance: int = Field(default=10, ge=1)
    egress_allow_cidrs: list[str] = Field(default_factory=list)
    monitoring_namespace: str = ""
    pool_label: str = "ml-endpoints.io/pool"
    pin_cpu_pools: bool = False
    gpu_quota: int = Field(default=0, ge=0)
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    build_images: bool = False
    image_registry: str = ""
    serving_image: str = ""
    image_pull_secret: str = ""
    service_account: str = ""
    policy_enforcement: Literal["advisory", "mandatory"] = "advisory"
    batch_instance_type: str = Field(default=DEFAULT_BATCH_INSTANCE_TYPE, min_length=1)
    batch_job_api_replicas: int = Field(default=2, ge=1, le=100)
    job_api_image: str = ""
    batch_runner_image: str = ""
    batch_volume_size: str = Field(default="100Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    batch_storage_class: str = ""
    batch_quotas: dict[str, dict[str, str]] = Field(default_factory=dict)
    create_priority_classes: bool = True
    overrides: dict[str, EndpointOverride] = Field(default_factory=dict)
    key_rotation: dict[str, KeyRotation] = Field(default_factory=dict)

    def cluster(self) -> ClusterSettings:
        """The subset the object builders need."""
        return ClusterSettings(
            namespace=self.namespace,
            domain=self.domain,
            public_gateway=GatewayRef.parse(self.public_gateway, f"{PROJECT_NAME}:publicGateway"),
            private_gateway=GatewayRef.parse(self.private_gateway, f"{PROJECT_NAME}:privateGateway"),
            keda=self.keda,
            keda_prometheus_url=self.keda_prometheus_url,
            keda_requests_per_instance=self.keda_requests_per_instance,
            egress_allow_cidrs=tuple(self.egress_allow_cidrs),
            monitoring_namespace=self.monitoring_namespace,
            pool_label=self.pool_label,
            pin_cpu_pools=self.pin_cpu_pools,
            oidc_issuer=self.oidc_issuer,
            oidc_audience=self.oidc_audience,
            oidc_jwks_url=self.oidc_jwks_url,
            image_pull_secret=self.image_pull_secret,
            service_account=self.service_account,
        )


def settings_from_config(values: Mapping[str, Any], source: str = "stack config") -> StackSettings:
    """Validate config values (keys without the ``ml-endpoints:`` prefix; missing keys take their defaults).

    Raises:
        SpecError: one problem per bad key, ``<source>: ml-endpoints:<key>: <message>`` with the bad value.
    """
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise SpecError(f"{source}: unknown config keys {unknown}; known: {sorted(CONFIG_KEYS)}")
    try:
        settings = StackSettings.model_validate({k: v for k, v in values.items() if v is not None})
        settings.cluster()  # gateway refs parse
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"{source}: {PROJECT_NAME}:{loc}: got {err.get('input')!r}; {err['msg']}")
        raise SpecError("\n".join(lines)) from e
    return settings


def load_stack_config(repo_root: Path, stack: str) -> dict[str, Any]:
    """Config values of ``stacks/Pulumi.<stack>.yaml`` (prefix stripped), without defaults (engine-free reading).

    Raises:
        SpecError: the file is missing, not YAML, or holds a key of another namespace or an encrypted value.
    """
    path = repo_root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name.split(".")[1] for p in (repo_root / "stacks").glob("Pulumi.*.yaml"))
        raise SpecError(f"{path}: no such stack file; stacks: {known}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from e
    out: dict[str, Any] = {}
    for key, value in (doc.get("config") or {}).items():
        ns, _, name = str(key).partition(":")
        if ns != PROJECT_NAME:
            continue  # provider settings such as kubernetes:context
        if isinstance(value, dict) and set(value) == {"secure"}:
            raise SpecError(f"{path}: {key}: encrypted values are not stack settings of this project")
        out[name] = value
    return out


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
    return _revalidate(BatchDeployment, spec, update, where, catalog) if update else spec  # type: ignore[no-any-return]


def _load_project(repo_root: Path, entry: str) -> EndpointProject:
    path = repo_root / entry
    if path.suffix in (".yml", ".yaml"):
        return load_endpoint_project(path.parent, path.name)
    return load_endpoint_project(path)


def resolve_stack(settings: StackSettings, repo_root: Path, check_names: bool = True) -> ResolvedStack:
    """Load every endpoint folder of the stack (online and batch) and apply its overrides.

    Args:
        settings: The stack's settings.
        repo_root: The Pulumi project folder (endpoint folders are relative to it).
        check_names: Render every object once to refuse two of the same kind and name (default True;
            :func:`render_stack` checks its own rendering instead).

    Raises:
        SpecError: a folder is invalid, an override names an unknown endpoint or deployment, two endpoints share a
            name (naming both folders and their kinds), two objects would share a name, a deployment has no
            image, or a batch deployment has no instance type of its pool.
    """
    online: list[ResolvedEndpoint] = []
    batch: list[ResolvedBatchEndpoint] = []
    seen: dict[str, tuple[str, str]] = {}
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
        if isinstance(endpoint, BatchEndpoint):
            batch.append(_resolve_batch(settings, repo_root, entry, project, endpoint))
        else:
            online.append(_resolve_online(settings, repo_root, entry, project, endpoint))
    check_unique_names([(r.endpoint.name, d.spec.name) for r in online for d in r.deployments])
    resolved = ResolvedStack(online, batch)
    if batch:
        _resolve_batch_platform(settings, repo_root, resolved)
    # Online and batch objects share the namespace: two of them of the same kind and name would overwrite each
    # other on the cluster (e.g. online "cars" deployment "x-jobs" and batch "cars-x"'s job API "cars-x-jobs").
    if check_names:
        _check_object_names(_render(resolved, settings))
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
            runner = settings.batch_runner_image or RUNNER_IMAGE_PLACEHOLDER
            build = batch_deployment_build(repo_root, dep_file, spec, endpoint.name, runner, settings.image_registry)
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
    if any(d.build is not None for r in resolved.batch for d in r.deployments):
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
    env = spec.environment
    if spec.is_custom_container and env is not None and not isinstance(env, str) and env.image:
        return env.image, None
    if settings.build_images:
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


def placeholder_image(build: ImageBuild) -> str:
    """Image reference shown in the offline plan for an image that ``pulumi up`` would build."""
    return f"{build.repository}:built-by-pulumi"


@dataclass
class RenderedStack:
    """Every object the stack creates (secrets as placeholders) and the endpoints' URIs."""

    objects: list[dict[str, Any]]
    scoring_uris: dict[str, str]
    swagger_uris: dict[str, str]
    jobs_uris: dict[str, str] = field(default_factory=dict)


@dataclass
class _Owned:
    objects: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (owner, object)

    def add(self, owner: str, objs: list[dict[str, Any]]) -> None:
        self.objects += [(owner, o) for o in objs]


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


def _render(resolved: ResolvedStack, settings: StackSettings) -> _Owned:
    cluster = settings.cluster()
    out = _Owned()
    if settings.create_namespace:
        out.add("the stack", [build_namespace(settings.namespace), build_default_deny(settings.namespace)])
    for pool, (instances, kueue) in compute_pools(resolved).items():
        reference = max(instances, key=lambda it: it.gpu_count)
        if settings.gpu_quota and reference.is_gpu:
            out.add(f"pool {pool}", [build_gpu_quota(pool, settings.namespace, settings.gpu_quota)])
        if kueue:
            flavor = build_resource_flavor(pool, reference, cluster, batch_flavor_name(settings.namespace, pool))
            out.add(f"pool {pool}", [flavor])
    if resolved.batch:
        platform = build_batch_platform_objects(
            settings.namespace, resolved.batch_quotas, settings.create_priority_classes
        )
        platform.append(build_batch_volume_claim(settings.namespace, resolved.options))
        out.add("the stack's batch platform", platform)
    for r in resolved.online:
        owner = f"online endpoint {r.endpoint.name!r} ({r.entry})"
        out.add(owner, build_endpoint_objects(r.endpoint, r.specs, cluster))
        for d in r.deployments:
            objs = build_deployment_objects(r.endpoint, d.spec, d.instance, cluster, _image(d.image, d.build))
            out.add(owner, objs)
    api_image = _image(resolved.job_api_image, resolved.job_api_build) if resolved.batch else ""
    for b in resolved.batch:
        owner = f"batch endpoint {b.endpoint.name!r} ({b.entry})"
        maps = [batch_template_config_map(b, d, cluster, resolved.options, _image(d.image, d.build))
                for d in b.deployments]  # fmt: skip
        out.add(owner, maps)
        out.add(owner, batch_endpoint_objects(b, cluster, resolved.options, api_image, templates_hash(maps)))
    return out


def batch_endpoint_objects(
    b: ResolvedBatchEndpoint, cluster: ClusterSettings, options: BatchOptions, image: Any, hash_: Any
) -> list[dict[str, Any]]:
    """Every object a ``BatchEndpoint`` creates, keys as placeholders (the offline plan's view)."""
    objs = [build_batch_keys_secret(b.endpoint, cluster)]
    objs += build_job_api_objects(b.endpoint, b.deployment_names, cluster, image, options, b.job_api_replicas, hash_)
    objs += [
        build_job_api_pdb(b.endpoint, cluster),
        build_job_api_route(b.endpoint, cluster, b.private),
        build_job_api_ingress_policy(b.endpoint, cluster, b.private),
        build_endpoint_local_queue(b.endpoint, cluster, options),
    ]
    return objs


def _check_object_names(owned: _Owned) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for owner, obj in owned.objects:
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
    resolved = resolve_stack(settings, repo_root, check_names=False)
    cluster = settings.cluster()
    owned = _render(resolved, settings)
    _check_object_names(owned)
    objs = [o for _, o in owned.objects]
    scoring = {r.endpoint.name: scoring_uri(r.endpoint, r.specs, cluster) for r in resolved.online}
    swagger = {r.endpoint.name: swagger_uri(r.endpoint, r.specs, cluster) for r in resolved.online}
    jobs = {b.endpoint.name: jobs_uri(b.endpoint, cluster) for b in resolved.batch}
    return RenderedStack(objs, scoring, swagger, jobs)
