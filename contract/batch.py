"""The batch runner's input contract, without pydantic: what ``python -m serving.batch.runner`` reads at start.

The job API (or the Kubernetes Job template) hands the runner its settings as JSON, in a file (``--settings FILE``)
or in ``ENDPOINTS_BATCH_SETTINGS``; :mod:`contract.batch_settings` holds the fields (one pydantic model,
``RunnerSettings``). This module holds what every side needs without importing pydantic (a runner's start pays
for every import): the variable name, the exit code that tells Kubernetes not to retry, the error type, the
job id hash, where a job's output and state lie, the per-job overrides and how the JSON sources merge.

This module imports nothing else of the project (see docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

SETTINGS_ENV = "ENDPOINTS_BATCH_SETTINGS"
# File the runner writes its failure reason to (Kubernetes: the container's terminationMessagePath).
TERMINATION_LOG_ENV = "ENDPOINTS_BATCH_TERMINATION_LOG"
# Exit code of a runner whose job failed for good (error threshold, bad input): the Job's podFailurePolicy fails
# the Job on it instead of retrying the pod.
EXIT_JOB_FAILED = 3


class RunnerSettingsError(ValueError):
    """Settings given to the runner are invalid; the message names the source, the field and the value."""


class JobSettings(Protocol):
    """What the journal and the status readers need: met by :class:`RunConfig` and by ``RunnerSettings``."""

    @property
    def output_dir(self) -> str: ...

    @property
    def output_file_name(self) -> str: ...

    @property
    def output_action(self) -> str: ...

    @property
    def overwrite(self) -> bool: ...

    @property
    def mini_batch_size(self) -> int: ...

    @property
    def instance_count(self) -> int: ...

    @property
    def error_threshold(self) -> int: ...

    def resolved_job_id(self) -> str:
        """The job id, or a stable hash of the job's definition."""
        ...

    @property
    def output_path(self) -> Path:
        """The append_row output file."""
        ...

    @property
    def summary_path(self) -> Path:
        """The summary file."""
        ...

    @property
    def state_dir(self) -> Path:
        """Journal and job identity folder."""
        ...


# Fields left out of the job id hash: they change how a job runs, not which job it is.
JOB_ID_EXCLUDE = frozenset({"job_id", "overwrite", "logging_level", "progress_interval"})


def job_id_hash(values: dict[str, Any]) -> str:
    """``job-<16 hex>`` from every field but :data:`JOB_ID_EXCLUDE` (the same for both settings classes)."""
    payload = {k: v for k, v in values.items() if k not in JOB_ID_EXCLUDE}
    return "job-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def output_path(output_dir: str, output_file_name: str) -> Path:
    """The append_row output file."""
    return Path(output_dir) / output_file_name


def summary_path(output_dir: str, output_file_name: str) -> Path:
    """``<output stem>.summary.json`` next to the output."""
    return Path(output_dir) / f"{Path(output_file_name).stem}.summary.json"


def state_dir(output_dir: str, output_file_name: str) -> Path:
    """``.<output file name>.batch`` next to the output, so that it survives the pod."""
    return Path(output_dir) / f".{output_file_name}.batch"


# Keys a job may override, with the runner field each one sets. Azure's names (retry_settings.*) are accepted too.
OVERRIDABLE = {
    "mini_batch_size": "mini_batch_size",
    "max_concurrency_per_instance": "max_concurrency_per_instance",
    "instance_count": "instance_count",
    "resources.instance_count": "instance_count",
    "output_action": "output_action",
    "output_file_name": "output_file_name",
    "max_retries": "max_retries",
    "retry_settings.max_retries": "max_retries",
    "timeout": "timeout",
    "retry_settings.timeout": "timeout",
    "error_threshold": "error_threshold",
    "logging_level": "logging_level",
    "overwrite": "overwrite",
}


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """Apply per-job overrides (Azure or runner names) to a settings mapping.

    Raises:
        RunnerSettingsError: an override names a key that a job cannot change.
    """
    out = dict(base)
    env = dict(out.get("environment_variables") or {})
    for key, value in overrides.items():
        if key.startswith("environment_variables."):
            env[key.split(".", 1)[1]] = str(value)
            continue
        target = OVERRIDABLE.get(key)
        if target is None:
            raise RunnerSettingsError(
                f"{source}: {key}: got {value!r}; a job may set {', '.join(sorted(OVERRIDABLE))} "
                "or environment_variables.<NAME>"
            )
        out[target] = value
    out["environment_variables"] = env
    return out


def read_settings_data(path: str | None, overrides: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Merge ``ENDPOINTS_BATCH_SETTINGS``, the JSON file and the overrides, lowest precedence first.

    Returns:
        (the merged mapping, its sources for error messages, e.g. ``"settings.json + command line"``).

    Raises:
        RunnerSettingsError: unreadable file, or JSON that is not an object.
    """
    data: dict[str, Any] = {}
    sources = []
    env = os.environ.get(SETTINGS_ENV)
    if env:
        try:
            loaded = json.loads(env)
        except json.JSONDecodeError as e:
            raise RunnerSettingsError(f"{SETTINGS_ENV}: not valid JSON: {e.msg} at position {e.pos}") from e
        if not isinstance(loaded, dict):
            raise RunnerSettingsError(f"{SETTINGS_ENV}: got {type(loaded).__name__}; expected a JSON object")
        data.update(loaded)
        sources.append(SETTINGS_ENV)
    if path:
        try:
            loaded = json.loads(Path(path).read_text())
        except OSError as e:
            raise RunnerSettingsError(f"{path}: cannot read settings: {e.strerror}") from e
        except json.JSONDecodeError as e:
            raise RunnerSettingsError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from e
        if not isinstance(loaded, dict):
            raise RunnerSettingsError(f"{path}: got {type(loaded).__name__}; expected a JSON object")
        data.update(loaded)
        sources.append(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if overrides:
        sources.append("command line")
    return data, " + ".join(sources) or "command line"
