"""Pieces shared by the online and batch specs: names, models, code, environments, references."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$"
NAME_RULE = (
    "names are 3 to 32 characters: a letter first, then letters, digits or hyphens, and no hyphen last"
    " (they become Kubernetes names)"
)

# `azureml:name:version` or `azureml:name@latest` (Azure ML's asset reference forms).
REFERENCE_RE = re.compile(r"^azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[A-Za-z0-9_.-]+)|@latest)$")


def _check_name(value: Any) -> Any:
    if isinstance(value, str) and not re.match(NAME_PATTERN, value):
        raise ValueError(f"got {value!r}; {NAME_RULE}")
    return value


Name = Annotated[str, BeforeValidator(_check_name), Field(description=NAME_RULE)]


def _stringify_env(value: Any) -> Any:
    # Azure accepts scalar YAML values for environment variables and passes them as strings.
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, dict | list) or v is None:
                raise ValueError(f"{k}: got {v!r}; environment variable values must be strings or numbers")
            out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        return out
    return value


EnvironmentVariables = Annotated[dict[str, str], BeforeValidator(_stringify_env)]


def _stringify_tags(value: Any) -> Any:
    # Azure takes any value for a tag (the CLI sends it as text): numbers, booleans, dates, empty values.
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, dict | list):
                raise ValueError(f"{k}: got {v!r}; a tag value is a single value (text, number, boolean or empty)")
            out[str(k)] = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        return out
    return value


Tags = Annotated[dict[str, str], BeforeValidator(_stringify_tags)]


class Spec(BaseModel):
    """Base of every spec model: unknown keys are errors, `$schema` is accepted and ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    schema_: str | None = Field(default=None, alias="$schema", description="Azure's JSON schema URL; ignored.")
    _source_path: str | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> str | None:
        """The file the spec was read from (``None`` for specs built in code)."""
        return self._source_path


class ModelAsset(Spec):
    """An inline model: ``{path}`` or ``{name, version, path}``."""

    name: str | None = Field(default=None, description="Model name (optional for inline models).")
    version: str | None = Field(default=None, description="Model version.")
    path: str = Field(min_length=1, description="Local folder/file or a URI (s3://, az://, gs://, https://, models:/).")
    type: Literal["custom_model", "mlflow_model", "triton_model"] = Field(
        default="custom_model", description="Azure ML model type (default custom_model)."
    )
    description: str | None = Field(default=None, description="Free text.")
    tags: Tags = Field(default_factory=dict, description="Free-form tags (scalar values, kept as text).")

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


class CodeConfiguration(Spec):
    """Where the scoring code lives."""

    code: str = Field(min_length=1, description="Folder holding the scoring code, relative to the spec file.")
    scoring_script: str = Field(min_length=1, description="Entry script inside `code`, e.g. `score.py`.")


class Route(Spec):
    """A port and path of a custom container (``inference_config``)."""

    port: int = Field(ge=1, le=65535, description="Container port.")
    path: str = Field(pattern=r"^/", description="HTTP path, starting with `/`.")


class InferenceConfig(Spec):
    """Routes of a custom container (bring your own image)."""

    liveness_route: Route = Field(description="Liveness probe route.")
    readiness_route: Route = Field(description="Readiness probe route.")
    scoring_route: Route = Field(description="Route that live traffic is sent to.")


class BuildContext(Spec):
    """An environment built from a Docker context."""

    path: str = Field(min_length=1, description="Build context folder.")
    dockerfile_path: str = Field(
        default="Dockerfile", description="Dockerfile inside the context (default Dockerfile)."
    )


class EnvironmentAsset(Spec):
    """An inline environment: a base image plus an optional conda file, or a build context."""

    name: str | None = Field(default=None, description="Environment name.")
    version: str | None = Field(default=None, description="Environment version.")
    description: str | None = Field(default=None, description="Free text.")
    tags: Tags = Field(default_factory=dict, description="Free-form tags (scalar values, kept as text).")
    image: str | None = Field(default=None, min_length=1, description="Base image (or the whole custom container).")
    conda_file: str | dict[str, Any] | None = Field(
        default=None, description="Conda environment file relative to the spec file, or the conda environment inline."
    )
    build: BuildContext | None = Field(default=None, description="Docker build context instead of an image.")
    os_type: Literal["linux", "Linux"] = Field(default="linux", description="Only linux is supported.")
    inference_config: InferenceConfig | None = Field(
        default=None, description="Routes of a custom container; absent for the serving image."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _image_or_build(self) -> EnvironmentAsset:
        if self.image is None and self.build is None:
            raise ValueError("an environment needs `image` or `build`")
        if self.image is not None and self.build is not None:
            raise ValueError("an environment has either `image` or `build`, not both")
        return self


def _check_reference(value: Any) -> Any:
    if isinstance(value, str) and not REFERENCE_RE.match(value):
        raise ValueError(
            f"got {value!r}; a reference is azureml:<name>:<version> or azureml:<name>@latest"
            " (or write the asset inline)"
        )
    return value


Reference = Annotated[str, BeforeValidator(_check_reference)]


def _asset_or_reference(value: Any) -> str:
    return "ref" if isinstance(value, str) else "asset"


ModelField = Annotated[
    Annotated[ModelAsset, Tag("asset")] | Annotated[Reference, Tag("ref")], Discriminator(_asset_or_reference)
]
EnvironmentField = Annotated[
    Annotated[EnvironmentAsset, Tag("asset")] | Annotated[Reference, Tag("ref")], Discriminator(_asset_or_reference)
]
# Union tags pydantic puts into error locations; the loader drops them so paths read as the YAML does.
UNION_TAGS = frozenset({"asset", "ref"})
AuthMode = Literal["key", "aml_token", "aad_token"]
EnabledDisabled = Literal["enabled", "disabled"]


def environment_image_notes(env: Any, batch: bool) -> list[str]:
    """What ``validate`` says about an ``environment.image`` that is not a custom container: on the cluster the
    deployment image (and, for a batch deployment, the batch runner under it) is built on it, unless it is one of
    Azure's curated images (the stack's default ``baseImageRedirects`` sends those to the serving image)."""
    if env is None or isinstance(env, str) or not env.image or env.inference_config is not None:
        return []
    built = "the batch runner and the deployment image are" if batch else "the deployment image is"
    if env.image.startswith("mcr.microsoft.com/azureml/"):
        instead = "batch runner image" if batch else "serving image"
        return [
            f"environment.image: {env.image!r} is one of Azure's curated inference images; on the cluster the"
            f" deployment image is built on the stack's {instead} instead (stack setting"
            " ml-endpoints:baseImageRedirects); local mode runs in this machine's Python"
        ]
    return [
        f"environment.image: {env.image!r}: on the cluster {built} built on it (it needs python3 >= 3.11 with"
        " venv; ml-endpoints:baseImageRedirects may redirect it); local mode runs in this machine's Python"
    ]


def lower_text(value: Any) -> Any:
    """Lower-case strings (Azure's enum values are case-insensitive: ``Key`` == ``key``)."""
    return value.lower() if isinstance(value, str) else value
