"""The settings a serving process reads from its environment, and the values derived from them.

One definition for every side of the contract: the serving process reads these classes
(:meth:`FrontendSettings.from_env`, :meth:`BatchSettings.from_env`); the writers — the Deployment builder
(``components.builders.online.serving_env``) and the local supervisor (``endpoints.local.supervisor``) — build the
same classes from the spec and render them with ``to_env()``; the gateway route and the local router take their
timeout from :attr:`FrontendSettings.upstream_timeout_s`. Variable names are the field names upper-cased after
``ENDPOINTS_`` (pydantic-settings' ``env_prefix``), so a field cannot be read under one name and written under
another.

This module imports nothing else of the project (see docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ENDPOINTS_"
# The server name of the x-ms-server-version header (followed by the installed distribution's version).
SERVER_NAME = "k8s-ml-endpoints"
AuthMode = Literal["none", "key", "aml_token", "aad_token"]

# Defaults of the production layer that the specs do not carry (Azure ML managed online endpoints' values).
DEFAULT_REQUEST_TIMEOUT_MS = 5000
DEFAULT_MAX_QUEUE_WAIT_MS = 500
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_DRAIN_TIMEOUT_S = 30
# Longer than the 60 s idle timeout of common gateways and load balancers, so the server never closes first.
DEFAULT_KEEPALIVE_TIMEOUT_S = 65
DEFAULT_HEADER_TIMEOUT_S = 10.0
# Seconds a gateway or the local router waits beyond the slowest a request may take (queue wait + run timeout).
UPSTREAM_MARGIN_S = 5

MAX_BATCH_SIZE = 4096
MAX_BATCH_WAIT_MS = 60_000
DEFAULT_BATCH_WAIT_MS = 5


def _env_names(model: type[BaseSettings], *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Environment variable -> field, in field order: ``ENDPOINTS_`` + the field name upper-cased."""
    return {f"{ENV_PREFIX}{name.upper()}": name for name in model.model_fields if name not in exclude}


def _render(value: Any) -> str:
    """How a value is written into the environment: whole floats without ``.0`` (``30``, not ``30.0``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class FrontendSettingsError(ValueError):
    """A production-layer setting is missing or has a bad value; the message names the variable and value."""


class _ContractSettings(BaseSettings):
    """Base of the ``ENDPOINTS_*`` settings classes: frozen, no unknown fields, and built only from the values given."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", frozen=True)

    def __init__(self, **values: Any) -> None:
        """Only the values given: the environment is read by :meth:`from_env` alone (names from ``env_prefix``,
        errors naming the variable), so a writer validating these settings never picks up its own process's.
        BaseSettings' source machinery is skipped (it would build and scan an environment source on every call;
        the builders make several of these per deployment and the offline plan hundreds: bench/plan)."""
        BaseModel.__init__(self, **values)


class FrontendSettings(_ContractSettings):
    """What the production layer enforces around the scoring app.

    Defaults follow Azure ML managed online endpoints (``request_settings``): 5 s request timeout, one
    concurrent request per instance, 500 ms queue wait, 64 MiB body, 30 s drain, 65 s keep-alive (longer than
    the 60 s idle timeout of common gateways and load balancers).

    Build it with :meth:`from_env` (the serving process) or :meth:`model_validate` (the writers: no environment is
    read); render it with :meth:`to_env`.
    """

    auth_mode: AuthMode = Field("none", description="none, key, aml_token or aad_token.")
    keys_dir: Path | None = Field(None, description="Folder holding the files `primary` and `secondary` (key mode).")
    token_signing_key_file: Path | None = Field(None, description="HS256 signing key file (aml_token mode).")
    endpoint_name: str | None = Field(None, description="Endpoint name; the `aud` of aml_token tokens.")
    oidc_issuer: str | None = Field(None, description="Expected `iss` of aad_token tokens.")
    oidc_audience: str | None = Field(None, description="Expected `aud` of aad_token tokens.")
    oidc_jwks_url: str | None = Field(None, description="JWKS URL of the OIDC issuer (http or https).")
    request_timeout_ms: int = Field(
        DEFAULT_REQUEST_TIMEOUT_MS, ge=1, le=3_600_000, description="Time from arrival to 408."
    )
    max_concurrent_requests: int = Field(1, ge=1, le=100_000, description="Requests running at once (per worker).")
    max_queue_wait_ms: int = Field(
        DEFAULT_MAX_QUEUE_WAIT_MS, ge=0, le=3_600_000, description="Longest wait for a slot before 429."
    )
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1, description="Largest (decoded) request body before 413.")
    drain_timeout_s: float = Field(
        DEFAULT_DRAIN_TIMEOUT_S, ge=0, le=3600, description="SIGTERM: time in-flight requests get."
    )
    keepalive_timeout_s: float = Field(
        DEFAULT_KEEPALIVE_TIMEOUT_S, gt=0, le=3600, description="Idle keep-alive connection timeout."
    )
    path_prefix: str = Field("", description="Prefix of every route (SERVICE_PATH_PREFIX), e.g. `/v1`; not an env.")

    @model_validator(mode="after")
    def _check_auth_inputs(self) -> FrontendSettings:
        """Each auth mode needs its inputs; name the variable that is missing."""
        required: dict[str, tuple[str, ...]] = {
            "none": (),
            "key": ("keys_dir",),
            "aml_token": ("token_signing_key_file", "endpoint_name"),
            "aad_token": ("oidc_issuer", "oidc_audience", "oidc_jwks_url"),
        }
        for field in required[self.auth_mode]:
            if not getattr(self, field):
                raise ValueError(f"ENDPOINTS_AUTH_MODE={self.auth_mode} needs {_FIELD_TO_ENV[field]} to be set")
        if self.auth_mode == "aad_token" and self.oidc_jwks_url:
            scheme = self.oidc_jwks_url.split("://", 1)[0].lower()
            if scheme not in ("http", "https"):
                raise ValueError(f"ENDPOINTS_OIDC_JWKS_URL: got {self.oidc_jwks_url!r}; use an http:// or https:// URL")
        if self.path_prefix and (not self.path_prefix.startswith("/") or self.path_prefix.endswith("/")):
            raise ValueError(f"path_prefix: got {self.path_prefix!r}; use '' or '/name' without a trailing slash")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FrontendSettings:
        """Read the settings from ``ENDPOINTS_*`` variables; unset or empty variables keep their default.

        Args:
            environ: Mapping to read instead of ``os.environ`` (default ``None``: the process environment).

        Raises:
            FrontendSettingsError: A variable has a bad value; the message names the variable and the value.
        """
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name, field in ENV_VARS.items():
            raw = env.get(name, "").strip()
            if raw:
                values[field] = raw
        try:
            settings = cls.model_validate(values)
        except ValidationError as e:
            raise FrontendSettingsError(_describe(e, values, _FIELD_TO_ENV, "{env}={value!r}: {message}")) from e
        for field in ("drain_timeout_s", "keepalive_timeout_s"):
            if not math.isfinite(getattr(settings, field)):
                raise FrontendSettingsError(f"{_FIELD_TO_ENV[field]}={values[field]!r}: must be a finite number")
        return settings

    def to_env(self) -> dict[str, str]:
        """The ``ENDPOINTS_*`` variables that reproduce these settings (unset optional fields are left out)."""
        return {
            name: _render(getattr(self, field)) for name, field in ENV_VARS.items() if getattr(self, field) is not None
        }

    @staticmethod
    def drain_for(request_timeout_ms: int, max_queue_wait_ms: int) -> int:
        """Drain time on SIGTERM for a deployment: the default 30 s, longer when one request may take longer."""
        return max(DEFAULT_DRAIN_TIMEOUT_S, math.ceil((request_timeout_ms + max_queue_wait_ms) / 1000) + 1)

    @property
    def upstream_timeout_s(self) -> float:
        """How long a gateway or the local router waits for this server: queue wait + run timeout + 5 s."""
        return (self.request_timeout_ms + self.max_queue_wait_ms) / 1000 + UPSTREAM_MARGIN_S

    def for_worker(self, index: int, count: int) -> FrontendSettings:
        """Settings for worker ``index`` of ``count`` processes sharing the port (SO_REUSEPORT or pre-fork).

        Admission is enforced per worker process (no cross-process lock on the hot path), so the instance-wide
        ``max_concurrent_requests`` is split: worker ``i`` gets ``limit // count`` slots plus one when
        ``i < limit % count``. A worker's share is never below 1 (a worker with no slot would reject every
        request the kernel hands it), so when ``limit < count`` the instance runs up to ``count`` requests at
        once; run as many workers as the limit (or fewer) to keep the limit exact.

        Args:
            index: Zero-based worker index.
            count: Number of workers (default deployments use 1, which returns the settings unchanged).
        """
        if count < 1 or not 0 <= index < count:
            raise FrontendSettingsError(f"worker index {index} of {count}: need 0 <= index < count and count >= 1")
        if count == 1:
            return self
        base, extra = divmod(self.max_concurrent_requests, count)
        share = max(1, base + (1 if index < extra else 0))
        return self.model_copy(update={"max_concurrent_requests": share})


# Environment variable -> settings field. The only ENDPOINTS_* variables the production layer reads.
ENV_VARS: dict[str, str] = _env_names(FrontendSettings, exclude=("path_prefix",))
_FIELD_TO_ENV = {field: env for env, field in ENV_VARS.items()}


class BatchSettings(_ContractSettings):
    """Adaptive request batching of one deployment (per worker process; ``serving.batching``).

    Attributes:
        max_batch_size: ``ENDPOINTS_MAX_BATCH_SIZE``: most requests in one model call; 1 (default) turns batching
            off.
        max_batch_wait_ms: ``ENDPOINTS_MAX_BATCH_WAIT_MS``: under load, the longest a queued request waits for
            others to fill its batch, from its arrival (default 5). Lone requests never wait.
    """

    max_batch_size: int = Field(
        default=1, ge=1, le=MAX_BATCH_SIZE, description="Requests per model call; 1: batching off."
    )
    max_batch_wait_ms: int = Field(
        default=DEFAULT_BATCH_WAIT_MS,
        ge=0,
        le=MAX_BATCH_WAIT_MS,
        description="Longest wait for a batch to fill, under load.",
    )

    @property
    def enabled(self) -> bool:
        """True when requests may be grouped (``max_batch_size`` > 1)."""
        return self.max_batch_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BatchSettings:
        """Read ``ENDPOINTS_MAX_BATCH_SIZE`` and ``ENDPOINTS_MAX_BATCH_WAIT_MS`` (unset or empty: the default).

        Raises:
            ValueError: a variable has a bad value; the message names the variable, the value and the bounds.
        """
        env = os.environ if environ is None else environ
        values = {field: env[name].strip() for name, field in BATCH_ENV_VARS.items() if env.get(name, "").strip()}
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            template = "environment variable {env}: got {value!r}; {raw}"
            raise ValueError(_describe(e, values, _BATCH_FIELD_TO_ENV, template)) from None

    def env(self) -> dict[str, str]:
        """The variables that configure these settings (what the builders render)."""
        return self.to_env()

    def to_env(self) -> dict[str, str]:
        """The ``ENDPOINTS_MAX_BATCH_*`` variables that reproduce these settings."""
        return {name: _render(getattr(self, field)) for name, field in BATCH_ENV_VARS.items()}


# Environment variable -> settings field: what the builders and the local supervisor write, and nothing else.
BATCH_ENV_VARS: dict[str, str] = _env_names(BatchSettings)
_BATCH_FIELD_TO_ENV = {field: env for env, field in BATCH_ENV_VARS.items()}


# Payload logging (Azure's data_collector): the collections whose lines the serving layer writes.
INPUT_COLLECTIONS = ("model_inputs", "request")
OUTPUT_COLLECTIONS = ("model_outputs", "response")
PAYLOAD_COLLECTIONS = INPUT_COLLECTIONS + OUTPUT_COLLECTIONS
RollingRate = Literal["minute", "hour", "day", "month", "year"]
# Request headers that carry credentials: never written by the data collector, even when asked for.
SECRET_HEADERS = frozenset(
    (
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-ms-token",
        "x-auth-token",
    )
)
DEFAULT_COLLECTOR_QUEUE_RECORDS = 10_000
DEFAULT_COLLECTOR_QUEUE_BYTES = 64 * 1024 * 1024


class DataCollectorSettings(_ContractSettings):
    """Payload logging of one deployment (Azure's ``data_collector``; ``serving.frontend.collector``).

    Each sampled ``/score`` request answered by the scoring app gives one JSON line per enabled input collection
    (the request body) and one per enabled output collection (the response body), written by a background thread
    under ``path`` (a folder or an fsspec URL), rolled per ``rolling_rate``. Records wait in a queue bounded by
    ``queue_records`` and ``queue_bytes``; when it is full a record is dropped and counted, never waited for.

    Attributes:
        data_collector_path: ``ENDPOINTS_DATA_COLLECTOR_PATH``: folder or fsspec URL (required).
        data_collector_collections: ``ENDPOINTS_DATA_COLLECTOR_COLLECTIONS``: comma-separated enabled collections
            among ``model_inputs``, ``request`` (inputs), ``model_outputs``, ``response`` (outputs).
        data_collector_sampling_rate: share of requests collected, decided by a hash of the request id (default 1).
        data_collector_rolling_rate: ``minute``, ``hour`` (default), ``day``, ``month`` or ``year``.
        data_collector_capture_headers: comma-separated request headers written with the inputs (default none);
            credential headers (``SECRET_HEADERS``) are refused.
        data_collector_queue_records: records waiting to be written at most (default 10000).
        data_collector_queue_bytes: payload bytes waiting to be written at most (default 64 MiB).
        data_collector_clock_start: for tests and replays: the collector's clock starts at this time (ISO 8601)
            and moves ``data_collector_clock_step_ms`` per request, instead of reading the wall clock.
        data_collector_clock_step_ms: see ``data_collector_clock_start`` (default 0).
    """

    data_collector_path: str = Field(min_length=1, description="Folder or fsspec URL the lines are written under.")
    data_collector_collections: str = Field(min_length=1, description="Comma-separated enabled collections.")
    data_collector_sampling_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of requests collected (0..1)."
    )
    data_collector_rolling_rate: RollingRate = Field(default="hour", description="minute, hour, day, month or year.")
    data_collector_capture_headers: str = Field(default="", description="Comma-separated request headers to write.")
    data_collector_queue_records: int = Field(
        default=DEFAULT_COLLECTOR_QUEUE_RECORDS,
        ge=1,
        le=10_000_000,
        description="Records waiting to be written, at most.",
    )
    data_collector_queue_bytes: int = Field(
        default=DEFAULT_COLLECTOR_QUEUE_BYTES, ge=1, description="Payload bytes waiting to be written, at most."
    )
    data_collector_clock_start: str | None = Field(
        default=None, description="Tests and replays: the clock's start (ISO)."
    )
    data_collector_clock_step_ms: int = Field(
        default=0, ge=0, le=86_400_000, description="Tests: clock step per request."
    )

    @model_validator(mode="after")
    def _check_values(self) -> DataCollectorSettings:
        for name in self.collections:
            if name not in PAYLOAD_COLLECTIONS:
                raise ValueError(
                    f"ENDPOINTS_DATA_COLLECTOR_COLLECTIONS: got {name!r}; use {', '.join(PAYLOAD_COLLECTIONS)}"
                )
        for header in self.capture_headers:
            if header in SECRET_HEADERS:
                raise ValueError(
                    f"ENDPOINTS_DATA_COLLECTOR_CAPTURE_HEADERS: got {header!r}; credentials are never collected"
                )
        if self.data_collector_clock_start is not None:
            try:
                datetime.fromisoformat(self.data_collector_clock_start)
            except ValueError:
                raise ValueError(
                    f"ENDPOINTS_DATA_COLLECTOR_CLOCK_START: got {self.data_collector_clock_start!r}; use an ISO 8601"
                    " time such as 2026-01-01T10:00:00+00:00"
                ) from None
        return self

    @property
    def collections(self) -> tuple[str, ...]:
        """The enabled collections, in the order given."""
        return tuple(n.strip() for n in self.data_collector_collections.split(",") if n.strip())

    @property
    def capture_headers(self) -> tuple[str, ...]:
        """Lower-cased names of the request headers written with the inputs."""
        return tuple(h.strip().lower() for h in self.data_collector_capture_headers.split(",") if h.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DataCollectorSettings | None:
        """Read ``ENDPOINTS_DATA_COLLECTOR_*``; None when ``ENDPOINTS_DATA_COLLECTOR_PATH`` is unset (no collection).

        Raises:
            FrontendSettingsError: a variable has a bad value; the message names the variable and the value.
        """
        env = os.environ if environ is None else environ
        values = {f: env[n].strip() for n, f in DATA_COLLECTOR_ENV_VARS.items() if env.get(n, "").strip()}
        if "data_collector_path" not in values:
            return None
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise FrontendSettingsError(
                _describe(e, values, _COLLECTOR_FIELD_TO_ENV, "{env}={value!r}: {message}")
            ) from e

    def to_env(self) -> dict[str, str]:
        """The ``ENDPOINTS_DATA_COLLECTOR_*`` variables that reproduce these settings (unset ones left out)."""
        return {
            name: _render(getattr(self, field))
            for name, field in DATA_COLLECTOR_ENV_VARS.items()
            if getattr(self, field) is not None
        }


# Environment variable -> settings field of payload logging.
DATA_COLLECTOR_ENV_VARS: dict[str, str] = _env_names(DataCollectorSettings)
_COLLECTOR_FIELD_TO_ENV = {field: env for env, field in DATA_COLLECTOR_ENV_VARS.items()}


def _describe(error: ValidationError, values: Mapping[str, str], names: Mapping[str, str], template: str) -> str:
    """One clause per bad field: the variable, the value it had and what is expected."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        raw = str(item["msg"])
        message = raw.removeprefix("Value error, ")
        if field in names:
            lines.append(template.format(env=names[field], value=values.get(field, ""), message=message, raw=raw))
        else:
            lines.append(message)
    return "; ".join(lines)


def _server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{SERVER_NAME}/{version('k8s-ml-endpoints')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return f"{SERVER_NAME}/0+unknown"


@dataclasses.dataclass(frozen=True)
class ScoringSettings:
    """Where the scoring code and model are, read from Azure ML's environment variables.

    Attributes:
        app_root: ``AML_APP_ROOT``; added to ``sys.path`` (default: the current directory).
        entry_script: ``AZUREML_ENTRY_SCRIPT``, relative to ``app_root`` or absolute (default none: MLflow model).
        model_dir: ``AZUREML_MODEL_DIR`` (default empty).
        source_dir: ``AZUREML_SOURCE_DIRECTORY``, relative to ``app_root``, also added to ``sys.path``.
        service_name: ``SERVICE_NAME``, the swagger title (default ``ML service``).
        service_version: ``SERVICE_VERSION``, the swagger version (default ``1.0``).
        service_path_prefix: ``SERVICE_PATH_PREFIX``, prefixed to the swagger paths (default empty).
        cors_origins: ``AML_CORS_ORIGINS``, comma-separated origins allowed by CORS (default none).
        worker_count: ``WORKER_COUNT``, worker processes (default 1).
        server_version: value of the ``x-ms-server-version`` header; ``HTTP_X_MS_SERVER_VERSION`` overrides it and
            ``SERVER_VERSION_LOG_RESPONSE_ENABLED=false`` turns it off (default ``k8s-ml-endpoints/<version>``).
        run_threads: ``ENDPOINTS_RUN_THREADS``, threads running synchronous ``run()`` per worker (default
            ``ENDPOINTS_MAX_CONCURRENT_REQUESTS``, itself 1 by default).
        batching: ``ENDPOINTS_MAX_BATCH_SIZE`` and ``ENDPOINTS_MAX_BATCH_WAIT_MS`` (default: batching off); see
            ``serving.batching``.
    """

    app_root: str
    entry_script: str | None = None
    model_dir: str = ""
    source_dir: str | None = None
    service_name: str = "ML service"
    service_version: str = "1.0"
    service_path_prefix: str = ""
    cors_origins: str | None = None
    worker_count: int = 1
    server_version: str = ""
    run_threads: int = 1
    batching: BatchSettings = dataclasses.field(default_factory=BatchSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScoringSettings:
        """Read the settings from ``environ`` (default ``os.environ``); bad integers raise ``ValueError``."""
        env = os.environ if environ is None else environ
        if env.get("SERVER_VERSION_LOG_RESPONSE_ENABLED", "true").lower() == "true":
            server_version = env.get("HTTP_X_MS_SERVER_VERSION") or _server_version()
        else:
            server_version = ""
        return cls(
            app_root=env.get("AML_APP_ROOT") or os.getcwd(),
            entry_script=env.get("AZUREML_ENTRY_SCRIPT") or None,
            model_dir=env.get("AZUREML_MODEL_DIR", ""),
            source_dir=env.get("AZUREML_SOURCE_DIRECTORY") or None,
            service_name=env.get("SERVICE_NAME", "ML service"),
            service_version=env.get("SERVICE_VERSION", "1.0"),
            service_path_prefix=env.get("SERVICE_PATH_PREFIX", ""),
            cors_origins=env.get("AML_CORS_ORIGINS") or None,
            worker_count=_int_env(env, "WORKER_COUNT", 1),
            server_version=server_version,
            run_threads=_int_env(env, "ENDPOINTS_RUN_THREADS", _int_env(env, "ENDPOINTS_MAX_CONCURRENT_REQUESTS", 1)),
            batching=BatchSettings.from_env(env),
        )

    @property
    def entry_script_path(self) -> str | None:
        """Absolute path of the entry script, or None when there is none (MLflow model)."""
        if not self.entry_script:
            return None
        return os.path.join(self.app_root, self.entry_script)


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}: got {raw!r}; expected a positive integer") from None
    if value < 1:
        raise ValueError(f"environment variable {name}: got {raw!r}; expected a positive integer")
    return value
