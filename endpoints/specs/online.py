"""Online endpoint and online deployment specs (Azure ML CLI v2: managed and kubernetes variants)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, ValidationInfo, field_validator, model_validator

from contract.serving import (
    MAX_BATCH_SIZE,
    MAX_BATCH_WAIT_MS,
    PAYLOAD_COLLECTIONS,
    SECRET_HEADERS,
    BatchSettings,
    DataCollectorSettings,
    RollingRate,
)
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
    Tags,
    environment_image_notes,
    lower_text,
)

MANAGED_MAX_REQUEST_TIMEOUT_MS = 180_000
KUBERNETES_MAX_REQUEST_TIMEOUT_MS = 300_000
MAX_MIRROR_PERCENT = 50

Weight = Annotated[StrictInt, Field(ge=0, le=100)]


def primary_deployment(traffic: dict[str, int], names: list[str] | tuple[str, ...]) -> str | None:
    """The deployment whose scoring path a plain call's ``scoring_uri`` shows: the one taking most live traffic;
    ties and no traffic fall back to name order (``None``: no deployment)."""
    if not names:
        return None
    return sorted(names, key=lambda n: (-traffic.get(n, 0), n))[0]


class OnlineEndpoint(Spec):
    """An online endpoint (``endpoint.yml``)."""

    name: Name
    description: str | None = Field(default=None, description="Free text.")
    tags: Tags = Field(default_factory=dict, description="Free-form tags (scalar values, kept as text).")
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
    """Per-request limits (Azure's defaults), plus this toolkit's adaptive batching (an extension, opt-in)."""

    request_timeout_ms: int = Field(
        default=5000, ge=1, le=KUBERNETES_MAX_REQUEST_TIMEOUT_MS, description="Default 5000."
    )
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1, le=1000, description="Default 1.")
    max_queue_wait_ms: int = Field(default=500, ge=0, le=KUBERNETES_MAX_REQUEST_TIMEOUT_MS, description="Default 500.")
    max_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Extension: most concurrent requests grouped into one run_batch()/predict call per worker "
        "(ENDPOINTS_MAX_BATCH_SIZE); unset or 1: batching off.",
    )
    max_batch_wait_ms: int | None = Field(
        default=None,
        ge=0,
        le=MAX_BATCH_WAIT_MS,
        description="Extension: under load, the longest a request waits for its batch to fill "
        "(ENDPOINTS_MAX_BATCH_WAIT_MS, default 5); lone requests never wait.",
    )

    @model_validator(mode="after")
    def _batch_fits_admission(self) -> RequestSettings:
        size = self.max_batch_size
        if size is not None and size > self.max_concurrent_requests_per_instance:
            raise ValueError(
                f"request_settings.max_batch_size: got {size} > max_concurrent_requests_per_instance "
                f"{self.max_concurrent_requests_per_instance}; a batch only holds requests admitted at once, so set "
                f"max_concurrent_requests_per_instance to at least {size}"
            )
        if self.max_batch_wait_ms is not None and size is None:
            raise ValueError(
                f"request_settings.max_batch_wait_ms: got {self.max_batch_wait_ms} without max_batch_size; "
                "set max_batch_size (above 1) to turn batching on"
            )
        return self

    def batching_env(self) -> dict[str, str]:
        """The ``ENDPOINTS_MAX_BATCH_*`` variables of the serving process (none when batching is not set)."""
        if self.max_batch_size is None:
            return {}
        settings = BatchSettings(
            max_batch_size=self.max_batch_size,
            **({"max_batch_wait_ms": self.max_batch_wait_ms} if self.max_batch_wait_ms is not None else {}),
        )
        return settings.env()


def _enabled_text(value: Any) -> Any:
    """Azure writes ``enabled: 'True'``; accept booleans and the strings true/false in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"got {value!r}; use 'True' or 'False'")


class CollectionData(Spec):
    """Where Azure registers a collection's data asset; here ``path`` may name the store (folder or fsspec URL)."""

    name: str | None = Field(default=None, description="Data asset name; accepted, not registered.")
    version: str | int | None = Field(default=None, description="Data asset version; accepted, not registered.")
    path: str | None = Field(
        default=None,
        min_length=1,
        description="Folder or fsspec URL (s3://, gs://, file://, ...) the lines are written under; azureml:// "
        "paths are accepted and ignored (the platform's default store is used).",
    )


class Collection(Spec):
    """One collection of ``data_collector.collections``."""

    enabled: Annotated[bool, BeforeValidator(_enabled_text)] = Field(
        default=False, description="'True' to collect (Azure's default is 'False')."
    )
    data: CollectionData | None = Field(default=None, description="Data asset of the collection.")
    client_id: str | None = Field(default=None, description="Azure identity; accepted, not applicable.")


class RequestLogging(Spec):
    """``data_collector.request_logging``: headers written with the inputs."""

    capture_headers: list[str] = Field(default_factory=list, description="Request headers written with the inputs.")

    @field_validator("capture_headers")
    @classmethod
    def _no_credentials(cls, value: list[str]) -> list[str]:
        for header in value:
            if header.strip().lower() in SECRET_HEADERS:
                raise ValueError(f"{header!r} carries credentials, which are never collected")
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header.strip()):
                raise ValueError(f"{header!r} is not an HTTP header name")
        return value


class DataCollector(Spec):
    """Azure's ``data_collector``: payload logging of ``/score`` requests and responses (JSON lines).

    ``model_inputs`` and ``request`` collect request bodies, ``model_outputs`` and ``response`` response bodies;
    other collection names are Azure's custom logging (the scoring script's own ``Collector``), accepted and not
    written by the platform.
    """

    collections: dict[str, Collection] = Field(description="Collections by name (model_inputs, model_outputs, ...).")
    sampling_rate: float = Field(default=1.0, ge=0, le=1, description="Share of requests collected (default 1.0).")
    rolling_rate: Annotated[RollingRate, BeforeValidator(lower_text)] = Field(
        default="hour", description="minute, hour (default), day, month or year: one folder per period."
    )
    request_logging: RequestLogging | None = Field(default=None, description="Headers written with the inputs.")

    @model_validator(mode="after")
    def _one_store(self) -> DataCollector:
        paths = {self.store_url(name) for name in self.enabled}
        if len(paths) > 1:
            shown = ", ".join(sorted(p or "(default)" for p in paths))
            raise ValueError(
                f"collections: data.path: got {shown}; every enabled collection of a deployment is written to one"
                " store: give them the same data.path, or none"
            )
        return self

    @property
    def enabled(self) -> tuple[str, ...]:
        """The enabled payload collections, in the order written."""
        return tuple(n for n, c in self.collections.items() if c.enabled and n in PAYLOAD_COLLECTIONS)

    def store_url(self, name: str) -> str | None:
        """The folder or URL a collection names with ``data.path`` (None: the platform's default store)."""
        data = self.collections[name].data
        path = data.path if data is not None else None
        if path is None or path.startswith("azureml:"):
            return None
        return path

    def store(self) -> str | None:
        """The store every enabled collection is written to (None: the platform's default store)."""
        return next((self.store_url(n) for n in self.enabled), None)

    def settings(self, default_store: str) -> DataCollectorSettings | None:
        """The serving process's settings (None when no payload collection is enabled)."""
        if not self.enabled:
            return None
        headers = self.request_logging.capture_headers if self.request_logging is not None else []
        return DataCollectorSettings(
            data_collector_path=self.store() or default_store,
            data_collector_collections=",".join(self.enabled),
            data_collector_sampling_rate=self.sampling_rate,
            data_collector_rolling_rate=self.rolling_rate,
            data_collector_capture_headers=",".join(h.strip() for h in headers),
        )

    def notes(self) -> list[str]:
        """Parts accepted and not acted on."""
        out = []
        custom = sorted(n for n, c in self.collections.items() if c.enabled and n not in PAYLOAD_COLLECTIONS)
        if custom:
            out.append(
                f"data_collector.collections: {', '.join(custom)}: custom logging is the scoring script's own"
                " Collector (azureml-ai-monitoring); the platform writes only " + ", ".join(PAYLOAD_COLLECTIONS)
            )
        if any((c.data is not None and (c.data.path or "").startswith("azureml:")) for c in self.collections.values()):
            out.append("data_collector: azureml:// data paths are ignored; lines go to the platform's default store")
        if self.collections and not self.enabled and not custom:
            out.append("data_collector: no collection is enabled (enabled: 'True'); nothing is collected")
        return out


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
    tags: Tags = Field(default_factory=dict, description="Free-form tags (scalar values, kept as text).")
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
    data_collector: DataCollector | None = Field(
        default=None, description="Payload logging: request and response bodies as JSON lines."
    )
    kind: Literal["online"] = Field(default="online", exclude=True, description="Spec kind (not in the YAML).")

    @field_validator("instance_type")
    @classmethod
    def _known_instance_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        catalog = catalog_from_any((info.context or {}).get("catalog"))
        canonical = catalog.canonical(value)
        if canonical is None:
            raise ValueError(unknown_instance_type_message(value, catalog.names()))
        return canonical  # Azure matches case-insensitively; the catalog's spelling from here on

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
        if self.is_triton:
            if self.code_configuration is not None:
                raise ValueError(
                    "code_configuration: a triton_model deployment is served by Triton Inference Server with no"
                    " scoring script here; drop code_configuration (or serve the model as custom_model with a script)"
                )
            if custom:
                raise ValueError(
                    "environment.inference_config: a triton_model deployment uses Triton's own routes; drop"
                    " inference_config (environment.image alone picks the Triton image)"
                )
        if self.environment is None and not self.is_mlflow_no_code and not self.is_triton:
            raise ValueError(
                "environment: missing; name an environment (inline image or azureml: reference); only an MLflow"
                " model (model.type: mlflow_model) with no code_configuration or a Triton model (triton_model) may"
                " omit it, as on Azure"
            )
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
    def is_mlflow_no_code(self) -> bool:
        """An MLflow model served with no scoring code (Azure's no-code deployment: ``environment`` optional)."""
        model = self.model
        return (
            self.code_configuration is None
            and model is not None
            and not isinstance(model, str)
            and (model.type == "mlflow_model")
        )

    @property
    def is_triton(self) -> bool:
        """A Triton Inference Server deployment (``model.type: triton_model``; Azure's no-code Triton)."""
        model = self.model
        return model is not None and not isinstance(model, str) and model.type == "triton_model"

    @property
    def is_custom_container(self) -> bool:
        """Whether the environment is a user image with its own routes."""
        env = self.environment
        return env is not None and not isinstance(env, str) and env.inference_config is not None

    @property
    def scoring_path(self) -> str:
        """Path live traffic is scored on: ``/score``, a custom container's ``scoring_route.path``, or Triton's
        ``/v2/models`` (requests go to ``/v2/models/<name>/infer``). The cluster's and local mode's
        ``scoring_uri`` end in it; both route every path to the deployment as it is."""
        if self.is_triton:
            return "/v2/models"
        env = self.environment
        if env is not None and not isinstance(env, str) and env.inference_config is not None:
            return env.inference_config.scoring_route.path
        return "/score"

    def notes(self) -> list[str]:
        """What the spec says that this toolkit accepts but does not act on."""
        out = []
        if self.app_insights_enabled:
            out.append("app_insights_enabled: Application Insights is not available; scrape /metrics and read the logs")
        if self.data_collector is not None:
            out.extend(self.data_collector.notes())
            if self.data_collector.enabled and (self.is_custom_container or self.is_triton):
                out.append(
                    "data_collector: payload logging runs in the platform's serving process; a custom container or"
                    " Triton deployment is not collected"
                )
        return out + environment_image_notes(self.environment, batch=False)
