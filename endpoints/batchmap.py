"""From a validated ``endpoints.specs.BatchDeployment`` (plus per-job choices) to the runner's settings.

The spec has already been validated by ``endpoints`` (Azure's rules and defaults); this module only renames
fields. Per-job overrides (``--set key=value``, the ``settings`` of ``POST /jobs``) are validated by
:class:`contract.batch_settings.RunnerSettings`, so a bad override names the runner's field and value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.batch import RunnerSettingsError, apply_overrides
from contract.batch_settings import RunnerSettings, parse_settings
from contract.model_layout import stage_local_model
from endpoints.specs import BatchDeployment, ModelAsset


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


def local_paths(
    deployment: BatchDeployment, base: Path, model_dir: Path, source: str = "deployment"
) -> dict[str, str | None]:
    """``entry_script`` and ``model_dir`` of a deployment on this machine (paths relative to its spec file).

    The model is laid out as Azure does (:func:`contract.model_layout.stage_local_model`): ``model_dir`` (exported
    as ``AZUREML_MODEL_DIR``) gets a link to it under its base name. ``source`` (the spec file) is named in errors.

    Raises:
        RunnerSettingsError: the model path does not exist (naming it).
    """
    code = deployment.code_configuration
    entry = str((base / code.code / code.scoring_script).resolve()) if code is not None else None
    model = deployment.model
    if not isinstance(model, ModelAsset) or "://" in model.path:
        return {"entry_script": entry, "model_dir": None}
    try:
        staged = stage_local_model(base / model.path, model_dir)
    except FileNotFoundError as e:
        message = f"{source}: model.path: got {model.path!r}; no such file or folder ({(base / model.path).resolve()})"
        raise RunnerSettingsError(message) from e
    return {"entry_script": entry, "model_dir": str(staged)}


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
        overrides: Per-job settings (see ``contract.batch.OVERRIDABLE``); default none.
        source: Named in error messages (default "job").

    Raises:
        RunnerSettingsError: a bad override, naming the key and the value.
    """
    data = apply_overrides(deployment_settings(deployment), overrides or {}, source)
    data.update(local_paths(deployment, base, Path(output_dir) / ".azureml-models"))
    data.update({"job_id": job_id, "input": input_uri, "output_dir": output_dir})
    return parse_settings(data, source)
