"""From a validated ``endpoints.specs.BatchDeployment`` (plus per-job choices) to the runner's settings.

The spec has already been validated by ``endpoints`` (Azure's rules and defaults); this module only renames
fields. Per-job overrides (``--set key=value``, the ``settings`` of ``POST /jobs``) are validated by
:class:`serving.batch.settings.RunnerSettings`, so a bad override names the runner's field and value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from endpoints.specs import BatchDeployment, ModelAsset
from serving.batch.settings import RunnerSettings, RunnerSettingsError, parse_settings

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


def deployment_settings(deployment: BatchDeployment) -> dict[str, Any]:
    """The runner fields a deployment spec fixes (no input, output, job id or paths)."""
    s = deployment.settings
    return {
        "mini_batch_size": s.mini_batch_size,
        "max_concurrency_per_instance": s.max_concurrency_per_instance,
        "instance_count": deployment.resources.instance_count,
        "output_action": s.output_action,
        "output_file_name": s.output_file_name,
        "max_retries": s.retry_settings.max_retries,
        "timeout": float(s.retry_settings.timeout),
        "error_threshold": s.error_threshold,
        "logging_level": s.logging_level,
        "environment_variables": dict(s.environment_variables),
    }


def local_paths(deployment: BatchDeployment, base: Path) -> dict[str, str | None]:
    """``entry_script`` and ``model_dir`` of a deployment on this machine (paths relative to its spec file)."""
    code = deployment.code_configuration
    entry = str((base / code.code / code.scoring_script).resolve()) if code is not None else None
    model = deployment.model
    model_dir = (
        str((base / model.path).resolve()) if isinstance(model, ModelAsset) and "://" not in model.path else None
    )
    return {"entry_script": entry, "model_dir": model_dir}


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


def runner_settings(
    deployment: BatchDeployment,
    base: Path,
    *,
    job_id: str,
    input_uri: str,
    output_dir: str,
    overrides: dict[str, Any] | None = None,
    source: str = "job",
) -> RunnerSettings:
    """Settings for a local run of ``deployment``.

    Args:
        deployment: The validated deployment spec.
        base: Folder of the deployment's spec file (relative code and model paths start there).
        job_id: The job id.
        input_uri: A file, folder or glob, local or an fsspec URI.
        output_dir: Output folder of the job.
        overrides: Per-job settings (see :data:`OVERRIDABLE`); default none.
        source: Named in error messages (default "job").

    Raises:
        RunnerSettingsError: a bad override, naming the key and the value.
    """
    data = apply_overrides(deployment_settings(deployment), overrides or {}, source)
    data.update(local_paths(deployment, base))
    data.update({"job_id": job_id, "input": input_uri, "output_dir": output_dir})
    return parse_settings(data, source)
