"""Settings of the production layer, read from the ``ENDPOINTS_*`` environment variables.

Local mode and the Kubernetes Deployment builder set exactly the variables listed in ``ENV_VARS``; the serving
process reads them once at start with :meth:`FrontendSettings.from_env`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

AuthMode = Literal["none", "key", "aml_token", "aad_token"]

# Environment variable -> settings field. The only variables this layer reads.
ENV_VARS: dict[str, str] = {
    "ENDPOINTS_AUTH_MODE": "auth_mode",
    "ENDPOINTS_KEYS_DIR": "keys_dir",
    "ENDPOINTS_TOKEN_SIGNING_KEY_FILE": "token_signing_key_file",
    "ENDPOINTS_ENDPOINT_NAME": "endpoint_name",
    "ENDPOINTS_OIDC_ISSUER": "oidc_issuer",
    "ENDPOINTS_OIDC_AUDIENCE": "oidc_audience",
    "ENDPOINTS_OIDC_JWKS_URL": "oidc_jwks_url",
    "ENDPOINTS_REQUEST_TIMEOUT_MS": "request_timeout_ms",
    "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "max_concurrent_requests",
    "ENDPOINTS_MAX_QUEUE_WAIT_MS": "max_queue_wait_ms",
    "ENDPOINTS_MAX_BODY_BYTES": "max_body_bytes",
    "ENDPOINTS_DRAIN_TIMEOUT_S": "drain_timeout_s",
    "ENDPOINTS_KEEPALIVE_TIMEOUT_S": "keepalive_timeout_s",
}
_FIELD_TO_ENV = {field: env for env, field in ENV_VARS.items()}


class FrontendSettingsError(ValueError):
    """A production-layer setting is missing or has a bad value; the message names the variable and value."""


class FrontendSettings(BaseModel):
    """What the production layer enforces around the scoring app.

    Defaults follow Azure ML managed online endpoints (``request_settings``): 5 s request timeout, one
    concurrent request per instance, 500 ms queue wait, 64 MiB body, 30 s drain, 65 s keep-alive (longer than
    the 60 s idle timeout of common gateways and load balancers).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_mode: AuthMode = Field("none", description="none, key, aml_token or aad_token.")
    keys_dir: Path | None = Field(None, description="Folder holding the files `primary` and `secondary` (key mode).")
    token_signing_key_file: Path | None = Field(None, description="HS256 signing key file (aml_token mode).")
    endpoint_name: str | None = Field(None, description="Endpoint name; the `aud` of aml_token tokens.")
    oidc_issuer: str | None = Field(None, description="Expected `iss` of aad_token tokens.")
    oidc_audience: str | None = Field(None, description="Expected `aud` of aad_token tokens.")
    oidc_jwks_url: str | None = Field(None, description="JWKS URL of the OIDC issuer (http or https).")
    request_timeout_ms: int = Field(5000, ge=1, le=3_600_000, description="Time from arrival to 408.")
    max_concurrent_requests: int = Field(1, ge=1, le=100_000, description="Requests running at once (per worker).")
    max_queue_wait_ms: int = Field(500, ge=0, le=3_600_000, description="Longest wait for a slot before 429.")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest (decoded) request body before 413.")
    drain_timeout_s: float = Field(30.0, ge=0, le=3600, description="SIGTERM: time in-flight requests get.")
    keepalive_timeout_s: float = Field(65.0, gt=0, le=3600, description="Idle keep-alive connection timeout.")
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
            raise FrontendSettingsError(_describe(e, values)) from e
        for field in ("drain_timeout_s", "keepalive_timeout_s"):
            if not math.isfinite(getattr(settings, field)):
                raise FrontendSettingsError(f"{_FIELD_TO_ENV[field]}={values[field]!r}: must be a finite number")
        return settings

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


def _describe(error: ValidationError, values: Mapping[str, str]) -> str:
    """One line per bad field: the variable, the value it had and what is expected."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        if field in _FIELD_TO_ENV:
            lines.append(f"{_FIELD_TO_ENV[field]}={values.get(field, '')!r}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)
