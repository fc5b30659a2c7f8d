"""The batch runner's settings, as one pydantic model: the fields, their defaults and their rules.

The runner does not read Azure ML YAML: the job API (or the Kubernetes Job template) maps a validated
``endpoints.specs.BatchDeployment`` onto :class:`RunnerSettings` (``endpoints.batchmap``) and hands it over as
JSON, either in a file (``--settings FILE``) or in the ``ENDPOINTS_BATCH_SETTINGS`` environment variable. Field
names and defaults follow Azure ML batch deployments so the mapping is one-to-one. The runner itself checks the
usual input without pydantic first (``serving.batch.runconfig``, for its start time) and falls back to this model.

Imports nothing else of the project but :mod:`contract.batch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract import batch as runconfig
from contract.batch import SETTINGS_ENV, TERMINATION_LOG_ENV, RunnerSettingsError

__all__ = [
    "SETTINGS_ENV",
    "TERMINATION_LOG_ENV",
    "RunnerSettings",
    "RunnerSettingsError",
    "load_settings",
    "parse_settings",
]


class RunnerSettings(BaseModel):
    """Everything one batch job needs; the same object for every instance of the job.

    Defaults are Azure ML's batch deployment defaults (mini_batch_size 10, max_retries 3, timeout 30 s,
    error_threshold -1, output_action append_row, output_file_name predictions.csv).
    """

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = Field(
        default=None,
        description="Identity of the job. Instances and restarts with the same id resume the same job; "
        "default: a hash of input, output and settings.",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    )
    input: str = Field(description="A file, a folder or a glob; a local path or an fsspec URI.", min_length=1)
    output_dir: str = Field(description="Local folder (a mounted volume on Kubernetes) for output and state.")
    output_file_name: str = Field(
        default="predictions.csv",
        description="Name of the append_row output file inside output_dir.",
        min_length=1,
        pattern=r"^[^/\\]+$",
    )
    output_action: Literal["append_row", "summary_only"] = Field(
        default="append_row", description="append_row writes every returned row; summary_only writes none."
    )
    overwrite: bool = Field(
        default=False, description="Replace an output file (and state) left by a different job; default false."
    )
    entry_script: str | None = Field(
        default=None, description="Scoring script with init() and run(mini_batch); none for MLflow models."
    )
    model_dir: str | None = Field(default=None, description="Folder exported as AZUREML_MODEL_DIR.")
    mini_batch_size: int = Field(default=10, ge=1, le=1_000_000, description="Files per run() call; default 10.")
    max_concurrency_per_instance: int = Field(default=1, ge=1, le=256, description="Worker processes; default 1.")
    instance_count: int = Field(default=1, ge=1, le=10_000, description="Instances splitting the mini-batches.")
    max_retries: int = Field(default=3, ge=0, le=100, description="Retries of a failed mini-batch; default 3.")
    timeout: float = Field(default=30.0, gt=0, le=86_400, description="Seconds per run() call; default 30.")
    error_threshold: int = Field(
        default=-1, ge=-1, description="Failed items tolerated over the job; -1 ignores failures (default)."
    )
    logging_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Runner log level; default info."
    )
    environment_variables: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the scoring workers."
    )
    progress_interval: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between progress log lines; default 5."
    )
    drain_timeout: float = Field(
        default=10.0, ge=0, le=3600, description="Seconds running mini-batches may finish after SIGTERM; default 10."
    )

    def resolved_job_id(self) -> str:
        """The job id, or a stable hash of what defines the job when none was given."""
        return self.job_id or runconfig.job_id_hash(self.model_dump())

    @property
    def output_path(self) -> Path:
        """The append_row output file."""
        return runconfig.output_path(self.output_dir, self.output_file_name)

    @property
    def summary_path(self) -> Path:
        """The summary file written at the end of every run (and on SIGTERM)."""
        return runconfig.summary_path(self.output_dir, self.output_file_name)

    @property
    def state_dir(self) -> Path:
        """Journal and job identity, next to the output so that it survives the pod."""
        return runconfig.state_dir(self.output_dir, self.output_file_name)


def _format_validation_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        parts.append(f"{source}: {loc}: got {e.get('input')!r}; {e['msg']}")
    return "; ".join(parts)


def parse_settings(data: dict[str, Any], source: str) -> RunnerSettings:
    """Validate a settings mapping.

    Args:
        data: the settings as plain JSON values.
        source: where they came from, repeated in error messages (a file name or an env var name).

    Raises:
        RunnerSettingsError: naming the source, the field and the bad value.
    """
    try:
        return RunnerSettings.model_validate(data)
    except ValidationError as e:
        raise RunnerSettingsError(_format_validation_error(source, e)) from e


def load_settings(path: str | None, overrides: dict[str, Any]) -> RunnerSettings:
    """Read settings from a JSON file and/or ``ENDPOINTS_BATCH_SETTINGS``, then apply overrides.

    Precedence (lowest first): the environment variable, the file, the overrides (command-line flags). The runner
    itself uses ``serving.batch.runconfig.load_run_config`` (the same, without pydantic on the usual path).
    """
    data, source = runconfig.read_settings_data(path, overrides)
    return parse_settings(data, source)
