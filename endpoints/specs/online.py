"""Online endpoint and online deployment specs (Azure ML CLI v2: managed and kubernetes variants)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, ValidationInfo, field_validator, model_validator

from endpoints.catalog import catalog_from_any, unknown_instance_type_message
from endpoints.specs.common import (
    AuthMode,
    CodeConfiguration,
    EnabledDisabled,
    EnvironmentField,
    EnvironmentVariables,
    ModelField,
    Name,
    Spec,
    lower_text,
)

MANAGED_MAX_REQUEST_TIMEOUT_MS = 180_000
KUBERNETES_MAX_REQUEST_TIMEOUT_MS = 300_000
MAX_MIRROR_PERCENT = 50

Weight = Annotated[StrictInt, Field(ge=0, le=100)]


class OnlineEndpoint(Spec):
    """An online endpoint (``endpoint.yml``)."""

    name: Name
    description: str | None = Field(default=None, description="Free text.")
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form tags.")
    auth_mode: Annotated[AuthMode, BeforeValidator(lower_text)] = Field(
        default="key", description="key (default), aml_token or aad_token (OIDC)."
    )
    traffic: dict[str, Weight] = Field(
        default_factory=dict, description="Live traffic per deployment in percent; sums to 0 or 100."
    )
    mirror_traffic: dict[str, Weight] = Field(
        default_factory=dict, description="Share of live traffic copied to one deployment under test (<= 50)."
    )
    public_network_access: Annotated[EnabledDisabled, BeforeValidator(lower_text)] = Field(
        default="enabled", description="disabled: reachable only through the private gateway."
    )
    compute: str | None = Field(default=None, description="Azure's attached compute; ignored (the stack decides).")
    identity: dict[str, Any] | None = Field(
        default=None, description="Azure managed identity; accepted, not applicable on Kubernetes."
    )
    kind: Literal["online"] = Field(default="online", exclude=True, description="Spec kind (not in the YAML).")

    @model_validator(mode="after")
    def _traffic_rules(self) -> OnlineEndpoint:
        total = sum(self.traffic.values())
        if total not in (0, 100):
            terms = "+".join(str(w) for w in self.traffic.values())
            raise ValueError(f"traffic: got {terms}={total}; live traffic must sum to 0 or 100")
        if len(self.mirror_traffic) > 1:
            raise ValueError(
                f"mirror_traffic: got {sorted(self.mirror_traffic)}; traffic can be mirrored to one deployment only"
            )
        for target, percent in self.mirror_traffic.items():
            if percent > MAX_MIRROR_PERCENT:
                raise ValueError(
                    f"mirror_traffic.{target}: got {percent}; at most {MAX_MIRROR_PERCENT} % can be mirrored"
                )
            if self.traffic.get(target, 0) > 0:
                raise ValueError(
                    f"mirror_traffic.{target}: deployment {target!r} receives {self.traffic[target]} % live traffic;"
                    " traffic can only be mirrored to a deployment with no live traffic"
                )
        return self

    def notes(self) -> list[str]:
        """What the spec says that this toolkit accepts but does not act on."""
        out = []
        if self.compute:
            out.append(f"compute: {self.compute!r} is ignored; the stack's cluster and pools decide where pods run")
        if self.identity:
            out.append("identity: Azure managed identities do not apply; use Kubernetes service accounts")
        return out


class RequestSettings(Spec):
    """Per-request limits (Azure's defaults)."""

    request_timeout_ms: int = Field(
        default=5000, ge=1, le=KUBERNETES_MAX_REQUEST_TIMEOUT_MS, description="Default 5000."
    )
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1, le=1000, description="Default 1.")
    max_queue_wait_ms: int = Field(default=500, ge=0, le=KUBERNETES_MAX_REQUEST_TIMEOUT_MS, description="Default 500.")


class Probe(Spec):
    """A liveness or readiness probe (Azure's defaults)."""

    initial_delay: int = Field(default=10, ge=0, le=3600, description="Seconds before the first probe (default 10).")
    period: int = Field(default=10, ge=1, le=3600, description="Seconds between probes (default 10).")
    timeout: int = Field(default=2, ge=1, le=3600, description="Seconds before a probe times out (default 2).")
    success_threshold: int = Field(default=1, ge=1, le=100, description="Successes to count as up (default 1).")
    failure_threshold: int = Field(default=30, ge=1, le=100, description="Failures to count as down (default 30).")


class DefaultScaleSettings(Spec):
    """Fixed instance count."""

    type: Literal["default"] = Field(description="default: instance_count replicas.")


class TargetUtilizationScaleSettings(Spec):
    """Autoscale on CPU utilisation (kubernetes deployments)."""

    type: Literal["target_utilization"] = Field(description="Autoscale between min and max instances.")
    min_instances: int = Field(default=1, ge=1, le=1000, description="Default 1.")
    max_instances: int = Field(default=1, ge=1, le=1000, description="Default 1.")
    target_utilization_percentage: int = Field(default=70, ge=1, le=100, description="Target CPU %, default 70.")
    polling_interval: int = Field(default=1, ge=1, le=3600, description="Seconds between metric polls (default 1).")

    @model_validator(mode="after")
    def _min_le_max(self) -> TargetUtilizationScaleSettings:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances: got {self.min_instances} > max_instances {self.max_instances};"
                " min_instances must be <= max_instances"
            )
        return self


ScaleSettings = Annotated[DefaultScaleSettings | TargetUtilizationScaleSettings, Field(discriminator="type")]

_QUANTITY = r"^([0-9]+(\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
ResourceKey = Literal["cpu", "memory", "nvidia.com/gpu", "ephemeral-storage"]


def _quantity_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v) for k, v in value.items()}
    return value


def _check_quantity(value: str) -> str:
    if not re.match(_QUANTITY, value):
        raise ValueError(f"got {value!r}; not a Kubernetes quantity (e.g. 500m, 2, 4Gi)")
    return value


Quantities = Annotated[
    dict[ResourceKey, Annotated[str, AfterValidator(_check_quantity)]], BeforeValidator(_quantity_text)
]


class Resources(Spec):
    """Kubernetes requests and limits (kubernetes online deployments)."""

    requests: Quantities = Field(default_factory=dict, description="cpu, memory, nvidia.com/gpu requests.")
    limits: Quantities = Field(default_factory=dict, description="cpu, memory, nvidia.com/gpu limits.")


class OnlineDeployment(Spec):
    """An online deployment (``deployments/<name>.yml``): managed or kubernetes."""

    name: Name
    endpoint_name: Name
    type: Annotated[Literal["managed", "kubernetes"], BeforeValidator(lower_text)] = Field(
        default="managed", description="managed (default) or kubernetes (Azure Arc schema)."
    )
    description: str | None = Field(default=None, description="Free text.")
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form tags.")
    model: ModelField | None = Field(default=None, description="Inline model or an azureml: reference.")
    model_mount_path: str | None = Field(default=None, pattern=r"^/", description="Where the model is mounted.")
    code_configuration: CodeConfiguration | None = Field(default=None, description="Scoring code.")
    environment: EnvironmentField | None = Field(default=None, description="Inline environment or a reference.")
    environment_variables: EnvironmentVariables = Field(default_factory=dict, description="Extra env vars.")
    instance_type: str | None = Field(default=None, description="Catalog name; kubernetes default defaultinstancetype.")
    instance_count: int = Field(default=1, ge=1, le=1000, description="Replicas (default 1).")
    request_settings: RequestSettings = Field(default_factory=RequestSettings, description="Request limits.")
    liveness_probe: Probe = Field(default_factory=Probe, description="Liveness probe.")
    readiness_probe: Probe = Field(default_factory=Probe, description="Readiness probe.")
    scale_settings: ScaleSettings = Field(
        default_factory=lambda: DefaultScaleSettings(type="default"), description="default or target_utilization."
    )
    resources: Resources | None = Field(default=None, description="Requests/limits (kubernetes deployments).")
    egress_public_network_access: Annotated[EnabledDisabled, BeforeValidator(lower_text)] = Field(
        default="enabled", description="disabled: egress only to DNS and the allow-list."
    )
    app_insights_enabled: bool = Field(default=False, description="Accepted; use /metrics and logs instead.")
    data_collector: dict[str, Any] | None = Field(default=None, description="Accepted; not supported.")
    kind: Literal["online"] = Field(default="online", exclude=True, description="Spec kind (not in the YAML).")

    @field_validator("instance_type")
    @classmethod
    def _known_instance_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        catalog = catalog_from_any((info.context or {}).get("catalog"))
        if value not in catalog:
            raise ValueError(unknown_instance_type_message(value, catalog.names()))
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> OnlineDeployment:
        limit = KUBERNETES_MAX_REQUEST_TIMEOUT_MS if self.type == "kubernetes" else MANAGED_MAX_REQUEST_TIMEOUT_MS
        timeout = self.request_settings.request_timeout_ms
        if timeout > limit:
            raise ValueError(
                f"request_settings.request_timeout_ms: got {timeout}; {self.type} deployments allow at most {limit}"
            )
        if self.type == "managed":
            if self.instance_type is None:
                raise ValueError("instance_type: missing; managed deployments name an instance type")
            if self.resources is not None:
                raise ValueError("resources: only kubernetes deployments set resources; managed ones use instance_type")
            if isinstance(self.scale_settings, TargetUtilizationScaleSettings):
                raise ValueError("scale_settings: target_utilization is for kubernetes deployments (type: kubernetes)")
        custom = (
            self.environment is not None
            and not isinstance(self.environment, str)
            and (self.environment.inference_config is not None)
        )
        if self.environment is None:
            raise ValueError("environment: missing; name an environment (inline image or azureml: reference)")
        if self.code_configuration is None and self.model is None and not custom:
            raise ValueError(
                "code_configuration: missing; a deployment needs scoring code, an MLflow model or a custom container"
            )
        return self

    @property
    def effective_instance_type(self) -> str:
        """``instance_type``, or Azure Arc's default for kubernetes deployments that name none."""
        return self.instance_type or "defaultinstancetype"

    @property
    def is_custom_container(self) -> bool:
        """Whether the environment is a user image with its own routes."""
        env = self.environment
        return env is not None and not isinstance(env, str) and env.inference_config is not None

    def notes(self) -> list[str]:
        """What the spec says that this toolkit accepts but does not act on."""
        out = []
        if self.app_insights_enabled:
            out.append("app_insights_enabled: Application Insights is not available; scrape /metrics and read the logs")
        if self.data_collector:
            out.append("data_collector: model data collection is not supported; it is ignored")
        return out
