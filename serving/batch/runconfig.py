"""The runner's settings without pydantic: what ``python -m serving.batch.runner`` loads at start.

:class:`contract.batch_settings.RunnerSettings` (pydantic) stays the one definition of the fields, their
defaults and their rules; the job API, the launchers and the spec mapping use it. Importing pydantic and
building that model costs a runner process ~0.15-0.3 s, longer than scoring a few thousand small files, so the
runner first tries :func:`fast_validate`: plain type and range checks that accept only input the model surely
accepts, giving the same values. Anything else (a wrong type, a value out of range, a missing or unknown field,
input the model would coerce) goes to the model, which accepts it or raises its usual error naming the field
and the value. ``tests/batch/test_runconfig.py`` holds the two paths to the same answers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from contract.batch import (  # noqa: F401  (re-exported: the runner's names for its settings)
    SETTINGS_ENV,
    TERMINATION_LOG_ENV,
    JobSettings,
    RunnerSettingsError,
    job_id_hash,
    output_path,
    read_settings_data,
    state_dir,
    summary_path,
)

# Field names and defaults, in RunnerSettings' order (tests/batch/test_runconfig.py holds them equal).
DEFAULTS: dict[str, Any] = {
    "job_id": None,
    "input": None,  # required
    "output_dir": None,  # required
    "output_file_name": "predictions.csv",
    "output_action": "append_row",
    "overwrite": False,
    "entry_script": None,
    "model_dir": None,
    "mini_batch_size": 10,
    "max_concurrency_per_instance": 1,
    "instance_count": 1,
    "max_retries": 3,
    "timeout": 30.0,
    "error_threshold": -1,
    "logging_level": "info",
    "environment_variables": None,  # default: {}
    "progress_interval": 5.0,
    "drain_timeout": 10.0,
}


class RunConfig:
    """The validated settings of one runner process; fields and defaults are ``RunnerSettings``' (see there).

    A plain class, not a dataclass: the dataclasses module (and inspect behind it) costs a runner's start more
    than everything this class does. Build it through :func:`validate`, which checks the values.
    """

    __slots__ = tuple(DEFAULTS)

    job_id: str | None
    input: str
    output_dir: str
    output_file_name: str
    output_action: str
    overwrite: bool
    entry_script: str | None
    model_dir: str | None
    mini_batch_size: int
    max_concurrency_per_instance: int
    instance_count: int
    max_retries: int
    timeout: float
    error_threshold: int
    logging_level: str
    environment_variables: dict[str, str]
    progress_interval: float
    drain_timeout: float

    def __init__(self, **values: Any) -> None:
        """Set every field from ``values`` (already valid), else its default.

        Raises:
            TypeError: an unknown field, or ``input``/``output_dir`` missing.
        """
        unknown = values.keys() - DEFAULTS.keys()
        if unknown:
            raise TypeError(f"RunConfig: unknown fields {sorted(unknown)}")
        for name, default in DEFAULTS.items():
            value = values.get(name, default)
            if value is None and name in ("input", "output_dir"):
                raise TypeError(f"RunConfig: {name} is required")
            if name == "environment_variables":
                value = dict(value or {})
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        """Every field, as ``RunnerSettings.model_dump()`` gives them."""
        return {name: getattr(self, name) for name in DEFAULTS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return "RunConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"

    __hash__ = None  # type: ignore[assignment]  # mutable dict field, as a dataclass would have it

    def resolved_job_id(self) -> str:
        """The job id, or a stable hash of what defines the job when none was given."""
        return self.job_id or job_id_hash(self.as_dict())

    @property
    def output_path(self) -> Path:
        """The append_row output file."""
        return output_path(self.output_dir, self.output_file_name)

    @property
    def summary_path(self) -> Path:
        """The summary file written at the end of every run (and on SIGTERM)."""
        return summary_path(self.output_dir, self.output_file_name)

    @property
    def state_dir(self) -> Path:
        """Journal and job identity, next to the output so that it survives the pod."""
        return state_dir(self.output_dir, self.output_file_name)


_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# name -> (bounds) for int fields, mirrored from RunnerSettings' Field(ge=..., le=...).
_INTS: dict[str, tuple[int, int | None]] = {
    "mini_batch_size": (1, 1_000_000),
    "max_concurrency_per_instance": (1, 256),
    "instance_count": (1, 10_000),
    "max_retries": (0, 100),
    "error_threshold": (-1, None),
}
# name -> (lower bound, lower bound inclusive, upper bound) for float fields.
_FLOATS: dict[str, tuple[float, bool, float]] = {
    "timeout": (0.0, False, 86_400.0),
    "progress_interval": (0.0, False, 3600.0),
    "drain_timeout": (0.0, True, 3600.0),
}
_CHOICES = {
    "output_action": ("append_row", "summary_only"),
    "logging_level": ("debug", "info", "warning", "error", "critical"),
}
_OPTIONAL_STR = ("entry_script", "model_dir")
_FIELDS = frozenset(DEFAULTS)


def fast_validate(data: dict[str, Any]) -> RunConfig | None:
    """The settings when they are surely valid as given, else None (then the pydantic model decides).

    Never accepts what ``RunnerSettings`` rejects, and gives the values it gives; it may send valid input to
    the model (e.g. ``"10"`` for an integer, which the model coerces).
    """
    if not data.keys() <= _FIELDS:
        return None
    values: dict[str, Any] = {}
    for name in ("input", "output_dir"):
        v = data.get(name)
        if type(v) is not str or (name == "input" and not v):
            return None
        values[name] = v
    if "job_id" in data:
        v = data["job_id"]
        if v is not None and not (type(v) is str and len(v) <= 128 and _JOB_ID.fullmatch(v)):
            return None
        values["job_id"] = v
    if "output_file_name" in data:
        v = data["output_file_name"]
        if type(v) is not str or not v or "/" in v or "\\" in v:
            return None
        values["output_file_name"] = v
    for name, choices in _CHOICES.items():
        if name in data:
            if data[name] not in choices or type(data[name]) is not str:
                return None
            values[name] = data[name]
    if "overwrite" in data:
        if type(data["overwrite"]) is not bool:
            return None
        values["overwrite"] = data["overwrite"]
    for name in _OPTIONAL_STR:
        if name in data:
            if data[name] is not None and type(data[name]) is not str:
                return None
            values[name] = data[name]
    for name, (lo, hi) in _INTS.items():
        if name in data:
            v = data[name]
            if type(v) is not int or v < lo or (hi is not None and v > hi):
                return None
            values[name] = v
    for name, (flo, inclusive, fhi) in _FLOATS.items():
        if name in data:
            v = data[name]
            if type(v) not in (int, float) or not (v >= flo if inclusive else v > flo) or not v <= fhi:
                return None
            values[name] = float(v)
            if not math.isfinite(values[name]):
                return None
    if "environment_variables" in data:
        env = data["environment_variables"]
        if type(env) is not dict or not all(type(k) is str and type(v) is str for k, v in env.items()):
            return None
        values["environment_variables"] = dict(env)
    return RunConfig(**values)


def validate(data: dict[str, Any], source: str) -> RunConfig:
    """Validate a settings mapping: :func:`fast_validate`, else the pydantic model (its errors, its coercions).

    Raises:
        RunnerSettingsError: naming the source, the field and the bad value.
    """
    fast = fast_validate(data)
    if fast is not None:
        return fast
    from contract.batch_settings import parse_settings  # pydantic: only for input the fast path does not vouch for

    return RunConfig(**parse_settings(data, source).model_dump())


def load_run_config(path: str | None, overrides: dict[str, Any]) -> RunConfig:
    """Read and validate the runner's settings (see :func:`read_settings_data` for precedence).

    Raises:
        RunnerSettingsError: naming the source, the field and the bad value.
    """
    data, source = read_settings_data(path, overrides)
    return validate(data, source)
