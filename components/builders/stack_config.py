"""The stack's configuration: every ``ml-endpoints:`` key, typed, with its default and meaning in one place.

:class:`StackSettings` is the schema. :data:`CONFIG_KEYS` (what ``Pulumi.yaml`` declares, and what the Pulumi program
reads with ``pulumi.Config``) is derived from it, never written twice. The program calls :func:`settings_from_config`
on what the engine gives; the offline plan reads ``stacks/Pulumi.<stack>.yaml`` with :func:`load_stack_config` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from components.builders.batch_options import DEFAULT_BATCH_INSTANCE_TYPE
from components.builders.common import ClusterSettings, GatewayRef
from endpoints import safe_yaml
from endpoints.errors import SpecError
from endpoints.images import DEFAULT_BASE_IMAGE_REDIRECTS

PROJECT_NAME = "ml-endpoints"


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
    """Every stack config key (``ml-endpoints:<camelCase name>``), typed, with its default and description."""

    namespace: str = Field(
        default="ml-endpoints",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Kubernetes namespace that holds every endpoint of this stack.",
    )
    create_namespace: bool = Field(
        default=True, description="Create the namespace (Pod Security 'restricted' enforced, default-deny ingress)."
    )
    domain: str = Field(
        default="endpoints.example.com",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="DNS domain; an endpoint is served at <endpoint>.<domain>.",
    )
    endpoints: list[str] = Field(
        default_factory=lambda: ["examples/car-classifier"],
        description=(
            "Endpoint folders (relative to the repository root) deployed by this stack; 'folder/endpoint.mirror.yml'"
            " picks another endpoint file of the folder."
        ),
    )
    public_gateway: str = Field(
        default="gateway-system/public",
        description="Gateway (<namespace>/<name>) of endpoints with public_network_access enabled.",
    )
    private_gateway: str = Field(
        default="gateway-system/private",
        description=(
            "Gateway (<namespace>/<name>, internal load balancer) of endpoints with public_network_access disabled."
        ),
    )
    public_network_access: Literal["", "enabled", "disabled"] = Field(
        default="",
        description="Override every endpoint's public_network_access: '' (as the spec says), enabled or disabled.",
    )
    keda: bool = Field(
        default=False,
        description="Autoscale target_utilization deployments with KEDA ScaledObjects (CPU + request rate).",
    )
    keda_prometheus_url: str = Field(
        default="http://prometheus.monitoring.svc:9090",
        description="Prometheus queried by KEDA's request-rate trigger.",
    )
    keda_requests_per_instance: int = Field(
        default=10, ge=1, description="Requests/s per instance that KEDA's request-rate trigger aims for."
    )
    egress_allow_cidrs: list[str] = Field(
        default_factory=list,
        description="CIDRs still reachable by deployments with egress_public_network_access disabled (besides DNS).",
    )
    api_server_cidrs: list[str] = Field(
        default_factory=list,
        description="CIDRs of the Kubernetes API server that batch job APIs may reach (TCP 443/6443); [] any address.",
    )
    monitoring_namespace: str = Field(
        default="", description="Namespace allowed to scrape /metrics of endpoint pods ('' none)."
    )
    monitoring: bool = Field(
        default=False,
        description=(
            "Per online endpoint: a PodMonitor, a PrometheusRule with SLO alerts and a Grafana dashboard ConfigMap"
            " (needs the Prometheus Operator)."
        ),
    )
    pool_label: str = Field(default="ml-endpoints.io/pool", description="Node label naming the compute pool of a node.")
    pin_cpu_pools: bool = Field(
        default=False, description="Also pin CPU deployments to their pool's nodes (GPU ones always are)."
    )
    gpu_quota: int = Field(
        default=0, ge=0, description="GPUs the namespace may request per GPU pool (ResourceQuota); 0: no quota."
    )
    oidc_issuer: str = Field(default="", description="OIDC issuer for aad_token endpoints.")
    oidc_audience: str = Field(default="", description="OIDC audience for aad_token endpoints.")
    oidc_jwks_url: str = Field(default="", description="OIDC JWKS URL for aad_token endpoints.")
    build_images: bool = Field(
        default=False,
        description="Build deployment images with pulumi-docker (else each needs a pinned image override).",
    )
    image_registry: str = Field(
        default="", description="Registry that built images are pushed to, e.g. registry.example.com/ml."
    )
    serving_image: str = Field(
        default="", description="Serving base image (built from serving/Dockerfile) that deployment images build on."
    )
    triton_image: str = Field(
        default="nvcr.io/nvidia/tritonserver:24.08-py3",
        min_length=1,
        description=(
            "Triton Inference Server image of triton_model deployments that name no environment.image (pin a digest in"
            " prod; mirror it for air-gapped clusters)."
        ),
    )
    base_image_redirects: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_BASE_IMAGE_REDIRECTS),
        description=(
            "Object. Image-reference prefix -> replacement for the environment.image deployment images are built on"
            " (longest prefix wins), e.g. {'docker.io/': 'registry.internal/dockerhub/'} for an air-gapped registry;"
            " the replacement 'serving' builds on servingImage instead. Default: Azure's curated images"
            " (mcr.microsoft.com/azureml/) -> serving."
        ),
    )
    image_pull_secret: str = Field(
        default="", description="docker-registry Secret (in the namespace) the pods pull private images with ('' none)."
    )
    service_account: str = Field(
        default="",
        description=(
            "Service account of the serving pods ('' the namespace default), e.g. one bound to a cloud identity that"
            " may read the model store."
        ),
    )
    data_collector_claim: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        description=(
            "PersistentVolumeClaim (in the namespace) that deployments with a data_collector write their JSON lines"
            " to, under <endpoint>/<deployment>/ ('' an emptyDir per pod; lines are lost with the pod)."
        ),
    )
    data_collector_url: str = Field(
        default="",
        pattern=r"^(|[A-Za-z][A-Za-z0-9+.-]*://.+)$",
        description=(
            "fsspec URL (s3://bucket/prefix, gs://...) that deployments with a data_collector write to, under"
            " <endpoint>/<deployment>/, instead of a volume; the pods' identity needs write access. A collection's"
            " own data.path wins."
        ),
    )
    policy_enforcement: Literal["advisory", "mandatory"] = Field(
        default="advisory", description="Policy pack enforcement level for this stack: advisory or mandatory."
    )
    batch_instance_type: str = Field(
        default=DEFAULT_BATCH_INSTANCE_TYPE,
        min_length=1,
        description=(
            "Instance type of batch deployments whose spec names none (Azure batch deployments name a compute cluster,"
            " not a VM size); it must run in the pool their compute names."
        ),
    )
    batch_job_api_replicas: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Replicas of each batch endpoint's job API (overrides.<endpoint>.jobApiReplicas per endpoint).",
    )
    job_api_image: str = Field(
        default="",
        description=(
            "Batch job API image (serving/Dockerfile.batch --target job-api); '' builds it on servingImage"
            " (buildImages)."
        ),
    )
    batch_runner_image: str = Field(
        default="",
        description=(
            "Batch runner image (serving/Dockerfile.batch --target runner) that batch deployment images build on; ''"
            " builds it on servingImage (buildImages)."
        ),
    )
    batch_volume_size: str = Field(
        default="100Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
        description="Size of the stack's ReadWriteMany batch volume (every batch job's output).",
    )
    batch_storage_class: str = Field(
        default="",
        description="Storage class of the batch volume ('' the cluster default; it must offer ReadWriteMany).",
    )
    batch_quotas: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description=(
            "Object. Per compute pool: {cpu, memory, nvidia.com/gpu}, the nominal quota of the stack's Kueue"
            " ClusterQueue; a pool not listed gets room for its largest batch job."
        ),
    )
    create_priority_classes: bool = Field(
        default=True,
        description=(
            "Create the cluster-scoped batch PriorityClasses (ml-endpoints-batch, ml-endpoints-batch-low); false in all"
            " but one stack sharing a cluster."
        ),
    )
    overrides: dict[str, EndpointOverride] = Field(
        default_factory=dict,
        description=(
            "Object. Per endpoint: {traffic, mirrorTraffic, jobApiReplicas, deployments: {<name>: {image,"
            " instanceCount, instanceType, modelPath, modelVersion, egressPublicNetworkAccess, environmentVariables,"
            " autoscale: {minInstances, maxInstances, targetUtilizationPercentage, pollingInterval}}}}; promotion edits"
            " these."
        ),
    )
    key_rotation: dict[str, KeyRotation] = Field(
        default_factory=dict,
        description=(
            "Object. Per endpoint: {primary, secondary, tokenSigning}: changing one value regenerates only that key."
        ),
    )

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
            api_server_cidrs=tuple(self.api_server_cidrs),
            monitoring_namespace=self.monitoring_namespace,
            monitoring=self.monitoring,
            pool_label=self.pool_label,
            pin_cpu_pools=self.pin_cpu_pools,
            oidc_issuer=self.oidc_issuer,
            oidc_audience=self.oidc_audience,
            oidc_jwks_url=self.oidc_jwks_url,
            image_pull_secret=self.image_pull_secret,
            service_account=self.service_account,
            triton_image=self.triton_image,
            data_collector_claim=self.data_collector_claim,
            data_collector_url=self.data_collector_url,
        )


@dataclass(frozen=True)
class ConfigKey:
    """One stack config key as ``Pulumi.yaml`` declares it (``type`` None: an object, which Pulumi cannot type)."""

    type: Literal["string", "integer", "boolean", "array"] | None
    default: Any
    description: str


def _config_type(annotation: Any) -> Literal["string", "integer", "boolean", "array"] | None:
    origin = get_origin(annotation) or annotation
    if origin is bool:
        return "boolean"
    if origin is int:
        return "integer"
    if origin is str or origin is Literal:
        return "string"
    if origin is list:
        return "array"
    return None  # mappings and models: objects


# Every stack config key, derived from StackSettings. Pulumi.yaml's `config:` section declares exactly these.
CONFIG_KEYS: dict[str, ConfigKey] = {
    to_camel(name): ConfigKey(_config_type(f.annotation), f.get_default(call_default_factory=True), f.description or "")
    for name, f in StackSettings.model_fields.items()
}


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
    doc = safe_yaml.load(path) or {}
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: expected a mapping with config:, got {type(doc).__name__}")
    out: dict[str, Any] = {}
    for key, value in (doc.get("config") or {}).items():
        ns, _, name = str(key).partition(":")
        if ns != PROJECT_NAME:
            continue  # provider settings such as kubernetes:context
        if isinstance(value, dict) and set(value) == {"secure"}:
            raise SpecError(f"{path}: {key}: encrypted values are not stack settings of this project")
        out[name] = value
    return out
