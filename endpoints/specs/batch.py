"""Batch endpoint and batch deployment specs (Azure ML CLI v2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from endpoints.specs.common import (
    AuthMode,
    CodeConfiguration,
    EnvironmentField,
    EnvironmentVariables,
    ModelField,
    Name,
    Spec,
    Tags,
    environment_image_notes,
    lower_text,
)


class BatchDefaults(Spec):
    """Defaults of a batch endpoint."""

    deployment_name: Name | None = Field(default=None, description="Deployment used when a job names none.")


class BatchEndpoint(Spec):
    """A batch endpoint (``endpoint.yml`` of a batch endpoint folder)."""

    name: Name
    description: str | None = Field(default=None, description="Free text.")
    tags: Tags = Field(default_factory=dict, description="Free-form tags (scalar values, kept as text).")
    auth_mode: Annotated[AuthMode, BeforeValidator(lower_text)] = Field(
        default="aad_token", description="aad_token (Azure's default and only mode), key or aml_token."
    )
    defaults: BatchDefaults = Field(default_factory=BatchDefaults, description="Default deployment.")
    kind: Literal["batch"] = Field(default="batch", exclude=True, description="Spec kind (not in the YAML).")


class RetrySettings(Spec):
    """Retries of a failed or timed-out mini-batch."""

    max_retries: int = Field(default=3, ge=0, le=100, description="Retries after the first attempt (default 3).")
    timeout: int = Field(default=30, ge=1, le=86_400, description="Seconds a mini-batch may run (default 30).")


def _plain_file_name(value: str) -> str:
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError(f"got {value!r}; a plain file name is expected (the output folder is given per job)")
    return value


class BatchSettings(Spec):
    """How a batch job scores (Azure's `settings` block; also accepted at the root of the deployment)."""

    max_concurrency_per_instance: int = Field(default=1, ge=1, le=256, description="Worker processes per instance.")
    mini_batch_size: int = Field(default=10, ge=1, le=100_000, description="Files per run() call (default 10).")
    output_action: Annotated[Literal["append_row", "summary_only"], BeforeValidator(lower_text)] = Field(
        default="append_row", description="append_row (default) writes every row; summary_only writes none."
    )
    output_file_name: Annotated[str, AfterValidator(_plain_file_name)] = Field(
        default="predictions.csv", description="Plain file name (default predictions.csv)."
    )
    retry_settings: RetrySettings = Field(default_factory=RetrySettings, description="Retries and timeout.")
    error_threshold: int = Field(default=-1, ge=-1, description="Failed items allowed; -1 ignores failures.")
    logging_level: Annotated[Literal["warning", "info", "debug"], BeforeValidator(lower_text)] = Field(
        default="info", description="warning, info (default) or debug."
    )
    environment_variables: EnvironmentVariables = Field(default_factory=dict, description="Extra env vars.")
    instance_count: int | None = Field(default=None, ge=1, le=1000, description="Older place of instance_count.")


class BatchResources(Spec):
    """Instances of a batch job."""

    instance_count: int = Field(default=1, ge=1, le=1000, description="Parallel instances (default 1).")


_SETTINGS_KEYS = set(BatchSettings.model_fields) - {"schema_"}


class BatchDeployment(Spec):
    """A model batch deployment (``deployments/<name>.yml`` of a batch endpoint folder)."""

    name: Name
    endpoint_name: Name
    type: Annotated[Literal["model"], BeforeValidator(lower_text)] = Field(
        default="model", description="model (pipeline deployments are not supported)."
    )
    description: str | None = Field(default=None, description="Free text.")
    tags: Tags = Field(default_factory=dict, description="Free-form tags (scalar values, kept as text).")
    model: ModelField | None = Field(default=None, description="Inline model or an azureml: reference.")
    code_configuration: CodeConfiguration | None = Field(default=None, description="Scoring code.")
    environment: EnvironmentField | None = Field(default=None, description="Inline environment or a reference.")
    compute: str | None = Field(default=None, description="Compute pool name (azureml:<name> accepted).")
    instance_type: str | None = Field(default=None, description="Instance type of each instance.")
    resources: BatchResources = Field(default_factory=BatchResources, description="Instance count.")
    settings: BatchSettings = Field(default_factory=BatchSettings, description="Scoring settings.")
    kind: Literal["batch"] = Field(default="batch", exclude=True, description="Spec kind (not in the YAML).")

    @model_validator(mode="before")
    @classmethod
    def _root_level_settings(cls, data: Any) -> Any:
        # Azure's older schema puts the settings at the root; both forms are accepted, not mixed for one key.
        if not isinstance(data, dict):
            return data
        if str(data.get("type", "model")).lower() in ("pipeline", "pipeline_component"):
            raise ValueError("type: got 'pipeline'; pipeline batch deployments are not supported, use type: model")
        root = {k: data[k] for k in _SETTINGS_KEYS if k in data}
        if not root:
            return data
        settings = data.get("settings") or {}
        if not isinstance(settings, dict):
            return data
        both = sorted(set(root) & set(settings))
        if both:
            raise ValueError(f"settings.{both[0]}: set both at the root and under settings; keep one")
        data = {k: v for k, v in data.items() if k not in root}
        data["settings"] = {**settings, **root}
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> BatchDeployment:
        if self.settings.instance_count is not None:
            self.resources = BatchResources(instance_count=self.settings.instance_count)
            self.settings.instance_count = None
        mlflow = self.model is not None and not isinstance(self.model, str) and self.model.type == "mlflow_model"
        if self.code_configuration is None and not mlflow:
            raise ValueError("code_configuration: missing; only MLflow models (type: mlflow_model) run without code")
        if self.model is None and self.code_configuration is None:
            raise ValueError("model: missing; a batch deployment needs a model or scoring code")
        return self

    def notes(self) -> list[str]:
        """What the spec says that this toolkit accepts but acts on differently (``environment.image``)."""
        return environment_image_notes(self.environment, batch=True)

    @property
    def compute_pool(self) -> str | None:
        """``compute`` without Azure's ``azureml:`` prefix."""
        return self.compute.removeprefix("azureml:") if self.compute else None
