"""The serving contract (contract/serving.py) read back from what its writers render: the Deployment builder's
environment, read by the serving process's own reader, gives the settings the builder meant."""

from __future__ import annotations

from pathlib import Path

import pytest
from specs_factory import DIGEST, SETTINGS, deployment, endpoint, instance

from components.builders.online import build_deployment, build_http_route, frontend_settings
from contract.serving import BatchSettings, FrontendSettings, FrontendSettingsError


def _env(obj: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_serving_process_reads_back_what_the_builder_writes() -> None:
    dep = deployment(request_settings={"request_timeout_ms": 90_000, "max_concurrent_requests_per_instance": 4})
    env = _env(build_deployment(endpoint(auth_mode="aml_token"), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    read = FrontendSettings.from_env(env)
    assert read.model_dump() == {
        "auth_mode": "aml_token",
        "keys_dir": Path("/etc/endpoints/keys"),
        "token_signing_key_file": Path("/etc/endpoints/keys/token-signing-key"),
        "endpoint_name": "cars",
        "oidc_issuer": None,
        "oidc_audience": None,
        "oidc_jwks_url": None,
        "request_timeout_ms": 90_000,
        "max_concurrent_requests": 4,
        "max_queue_wait_ms": 500,
        "max_body_bytes": 64 * 1024 * 1024,
        "drain_timeout_s": 92.0,
        "keepalive_timeout_s": 65.0,
        "path_prefix": "",
    }
    assert (env["ENDPOINTS_DRAIN_TIMEOUT_S"], env["ENDPOINTS_KEEPALIVE_TIMEOUT_S"]) == ("92", "65")


def test_the_route_waits_the_contracts_upstream_timeout() -> None:
    dep = deployment(request_settings={"request_timeout_ms": 90_000, "max_queue_wait_ms": 2_500})
    assert frontend_settings(dep).upstream_timeout_s == 97.5
    route = build_http_route(endpoint(traffic={"alice": 100}), [dep], SETTINGS)
    assert {r["timeouts"]["request"] for r in route["spec"]["rules"]} == {"98s"}


def test_writers_never_read_the_environment_of_the_process_running_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENDPOINTS_MAX_BODY_BYTES", "7")
    monkeypatch.setenv("ENDPOINTS_OIDC_ISSUER", "https://leak.example.com")
    env = frontend_settings(deployment()).to_env()
    assert env["ENDPOINTS_MAX_BODY_BYTES"] == str(64 * 1024 * 1024)
    assert "ENDPOINTS_OIDC_ISSUER" not in env


def test_batch_settings_round_trip_and_bad_values_name_the_variable() -> None:
    settings = BatchSettings.model_validate({"max_batch_size": 16, "max_batch_wait_ms": 2})
    assert settings.to_env() == {"ENDPOINTS_MAX_BATCH_SIZE": "16", "ENDPOINTS_MAX_BATCH_WAIT_MS": "2"}
    assert BatchSettings.from_env(settings.to_env()) == settings
    with pytest.raises(ValueError) as info:
        BatchSettings.from_env({"ENDPOINTS_MAX_BATCH_WAIT_MS": "-1"})
    assert str(info.value) == (
        "environment variable ENDPOINTS_MAX_BATCH_WAIT_MS: got '-1'; Input should be greater than or equal to 0"
    )


def test_drain_is_the_default_or_one_request_plus_a_second() -> None:
    assert FrontendSettings.drain_for(5_000, 500) == 30
    assert FrontendSettings.drain_for(120_000, 500) == 122
    with pytest.raises(FrontendSettingsError) as info:
        FrontendSettings.from_env({"ENDPOINTS_DRAIN_TIMEOUT_S": "inf"})
    assert str(info.value) == "ENDPOINTS_DRAIN_TIMEOUT_S='inf': Input should be less than or equal to 3600"
