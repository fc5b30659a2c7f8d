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

from components.builders.common import ClusterSettings, GatewayRef
from components.builders.compute import build_gpu_quota, pools_of
from components.builders.image import ImageBuild, image_build_args
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
from endpoints.specs import ModelAsset, OnlineDeployment, OnlineEndpoint

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
    "overrides": ConfigKey(
        None,
        {},
        "Object. Per endpoint: {traffic, mirrorTraffic, deployments: {<name>: {image, instanceCount, instanceType,"
        " modelPath, modelVersion, egressPublicNetworkAccess, environmentVariables, autoscale: {minInstances,"
        " maxInstances, targetUtilizationPercentage, pollingInterval}}}}; promotion edits these.",
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
    """One deployment with the stack's overrides applied."""

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
        model = spec.model
        if not isinstance(model, ModelAsset):
            raise SpecError(
                f"{where}: modelPath/modelVersion: deployment {spec.name!r} has no inline model to override"
            )
        m = model.model_dump(by_alias=True)
        if ov.model_path is not None:
            m["path"] = ov.model_path
        if ov.model_version is not None:
            m["version"] = ov.model_version
        update["model"] = m
    return _revalidate(OnlineDeployment, spec, update, where, catalog) if update else spec


def resolve_stack(settings: StackSettings, repo_root: Path) -> list[ResolvedEndpoint]:
    """Load every online endpoint folder of the stack and apply its overrides.

    Raises:
        SpecError: a folder is invalid, an override names an unknown endpoint or deployment, two endpoints share a
            name, two objects would share a name, or a deployment has no image.
    """
    out: list[ResolvedEndpoint] = []
    seen: dict[str, str] = {}
    for entry in settings.endpoints:
        path = repo_root / entry
        project = (
            load_endpoint_project(path.parent, path.name)
            if path.suffix in (".yml", ".yaml")
            else load_endpoint_project(path)
        )
        endpoint = project.endpoint
        if not isinstance(endpoint, OnlineEndpoint):
            continue  # batch endpoints are wired by the batch components
        if endpoint.name in seen:
            raise SpecError(
                f"{PROJECT_NAME}:endpoints: {entry!r} and {seen[endpoint.name]!r} both define endpoint"
                f" {endpoint.name!r}; endpoint names are unique in a stack"
            )
        seen[endpoint.name] = entry
        where = f"{PROJECT_NAME}:overrides.{endpoint.name}"
        ov = settings.overrides.get(endpoint.name, EndpointOverride())
        for dep_name in ov.deployments:
            if dep_name not in project.deployments:
                raise SpecError(
                    f"{where}.deployments.{dep_name}: no such deployment; known: {sorted(project.deployments)}"
                )
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
                    raise SpecError(
                        f"{where}.{table}.{target}: no such deployment; known: {sorted(project.deployments)}"
                    )
        rotation = settings.key_rotation.get(endpoint.name, KeyRotation())
        out.append(ResolvedEndpoint(entry, project, endpoint, deployments, rotation))
    check_unique_names([(r.endpoint.name, d.spec.name) for r in out for d in r.deployments])
    return out


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


def gpu_pools(resolved: list[ResolvedEndpoint]) -> dict[str, list[InstanceType]]:
    """GPU pools used by the stack's deployments, by pool name."""
    return {
        pool: its
        for pool, its in pools_of(d.instance for r in resolved for d in r.deployments).items()
        if any(i.is_gpu for i in its)
    }


def placeholder_image(build: ImageBuild) -> str:
    """Image reference shown in the offline plan for an image that ``pulumi up`` would build."""
    return f"{build.repository}:built-by-pulumi"


@dataclass
class RenderedStack:
    """Every object the stack creates (secrets as placeholders) and the endpoints' URIs."""

    objects: list[dict[str, Any]]
    scoring_uris: dict[str, str]
    swagger_uris: dict[str, str]


def render_stack(settings: StackSettings, repo_root: Path) -> RenderedStack:
    """Render the whole stack offline with the same builders the components call (keys are placeholders)."""
    resolved = resolve_stack(settings, repo_root)
    cluster = settings.cluster()
    objs: list[dict[str, Any]] = []
    if settings.create_namespace:
        objs += [build_namespace(settings.namespace), build_default_deny(settings.namespace)]
    if settings.gpu_quota:
        objs += [build_gpu_quota(pool, settings.namespace, settings.gpu_quota) for pool in gpu_pools(resolved)]
    scoring: dict[str, str] = {}
    swagger: dict[str, str] = {}
    for r in resolved:
        objs += build_endpoint_objects(r.endpoint, r.specs, cluster)
        for d in r.deployments:
            image = d.image if d.image is not None else placeholder_image(d.build)  # type: ignore[arg-type]
            objs += build_deployment_objects(r.endpoint, d.spec, d.instance, cluster, image)
        scoring[r.endpoint.name] = scoring_uri(r.endpoint, r.specs, cluster)
        swagger[r.endpoint.name] = swagger_uri(r.endpoint, r.specs, cluster)
    return RenderedStack(objs, scoring, swagger)
