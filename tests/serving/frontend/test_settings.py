"""FrontendSettings.from_env: defaults, bad values named with their variable, auth inputs, worker split."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.frontend import ENV_VARS, FrontendSettings, FrontendSettingsError, build_frontend


def test_defaults_follow_azure_request_settings():
    s = FrontendSettings.from_env({})
    assert s.auth_mode == "none"
    assert (s.request_timeout_ms, s.max_concurrent_requests, s.max_queue_wait_ms) == (5000, 1, 500)
    assert s.max_body_bytes == 67108864
    assert (s.drain_timeout_s, s.keepalive_timeout_s) == (30.0, 65.0)


def test_reads_exactly_the_contract_variables():
    assert sorted(ENV_VARS) == sorted(
        [
            "ENDPOINTS_AUTH_MODE",
            "ENDPOINTS_KEYS_DIR",
            "ENDPOINTS_TOKEN_SIGNING_KEY_FILE",
            "ENDPOINTS_ENDPOINT_NAME",
            "ENDPOINTS_OIDC_ISSUER",
            "ENDPOINTS_OIDC_AUDIENCE",
            "ENDPOINTS_OIDC_JWKS_URL",
            "ENDPOINTS_REQUEST_TIMEOUT_MS",
            "ENDPOINTS_MAX_CONCURRENT_REQUESTS",
            "ENDPOINTS_MAX_QUEUE_WAIT_MS",
            "ENDPOINTS_MAX_BODY_BYTES",
            "ENDPOINTS_DRAIN_TIMEOUT_S",
            "ENDPOINTS_KEEPALIVE_TIMEOUT_S",
        ]
    )
    s = FrontendSettings.from_env(
        {
            "ENDPOINTS_AUTH_MODE": "aad_token",
            "ENDPOINTS_OIDC_ISSUER": "https://issuer.example",
            "ENDPOINTS_OIDC_AUDIENCE": "api://cars",
            "ENDPOINTS_OIDC_JWKS_URL": "https://issuer.example/keys",
            "ENDPOINTS_REQUEST_TIMEOUT_MS": "90000",
            "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "8",
            "ENDPOINTS_MAX_QUEUE_WAIT_MS": "0",
            "ENDPOINTS_MAX_BODY_BYTES": "1024",
            "ENDPOINTS_DRAIN_TIMEOUT_S": "12.5",
            "ENDPOINTS_KEEPALIVE_TIMEOUT_S": "75",
        }
    )
    assert (s.request_timeout_ms, s.max_concurrent_requests, s.max_queue_wait_ms, s.max_body_bytes) == (
        90000,
        8,
        0,
        1024,
    )
    assert (s.drain_timeout_s, s.keepalive_timeout_s, s.oidc_audience) == (12.5, 75.0, "api://cars")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"ENDPOINTS_AUTH_MODE": "keys"},
            "ENDPOINTS_AUTH_MODE='keys': Input should be 'none', 'key', 'aml_token' or 'aad_token'",
            id="mode",
        ),
        pytest.param(
            {"ENDPOINTS_REQUEST_TIMEOUT_MS": "5s"},
            "ENDPOINTS_REQUEST_TIMEOUT_MS='5s': Input should be a valid integer",
            id="timeout-unit",
        ),
        pytest.param(
            {"ENDPOINTS_MAX_CONCURRENT_REQUESTS": "0"},
            "ENDPOINTS_MAX_CONCURRENT_REQUESTS='0': Input should be greater than or equal to 1",
            id="concurrency-zero",
        ),
        pytest.param(
            {"ENDPOINTS_MAX_BODY_BYTES": "-1"},
            "ENDPOINTS_MAX_BODY_BYTES='-1': Input should be greater than or equal to 1",
            id="body",
        ),
        pytest.param(
            {"ENDPOINTS_KEEPALIVE_TIMEOUT_S": "0"},
            "ENDPOINTS_KEEPALIVE_TIMEOUT_S='0': Input should be greater than 0",
            id="keepalive",
        ),
        pytest.param({"ENDPOINTS_DRAIN_TIMEOUT_S": "nan"}, "ENDPOINTS_DRAIN_TIMEOUT_S='nan'", id="drain-nan"),
        pytest.param(
            {"ENDPOINTS_AUTH_MODE": "key"},
            "ENDPOINTS_AUTH_MODE=key needs ENDPOINTS_KEYS_DIR to be set",
            id="key-no-dir",
        ),
        pytest.param(
            {"ENDPOINTS_AUTH_MODE": "aml_token", "ENDPOINTS_TOKEN_SIGNING_KEY_FILE": "/k"},
            "ENDPOINTS_AUTH_MODE=aml_token needs ENDPOINTS_ENDPOINT_NAME to be set",
            id="aml-no-name",
        ),
        pytest.param(
            {
                "ENDPOINTS_AUTH_MODE": "aad_token",
                "ENDPOINTS_OIDC_ISSUER": "i",
                "ENDPOINTS_OIDC_AUDIENCE": "a",
                "ENDPOINTS_OIDC_JWKS_URL": "file:///etc/passwd",
            },
            "ENDPOINTS_OIDC_JWKS_URL: got 'file:///etc/passwd'; use an http:// or https:// URL",
            id="jwks",
        ),
    ],
)
def test_bad_values_name_variable_and_value(env, message):
    with pytest.raises(FrontendSettingsError) as info:
        FrontendSettings.from_env(env)
    assert message in str(info.value)


def test_missing_auth_inputs_fail_at_build(tmp_path: Path):
    app = object()
    with pytest.raises(FrontendSettingsError, match=r"ENDPOINTS_KEYS_DIR='.*nope': not a folder"):
        build_frontend(app, FrontendSettings(auth_mode="key", keys_dir=tmp_path / "nope"), lambda: True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrontendSettingsError, match="neither 'primary' nor 'secondary' holds a key"):
        build_frontend(app, FrontendSettings(auth_mode="key", keys_dir=tmp_path / "empty"), lambda: True)
    short = tmp_path / "short"
    short.write_bytes(b"too-short")
    with pytest.raises(FrontendSettingsError, match="missing, empty or shorter than 32 bytes"):
        build_frontend(
            app, FrontendSettings(auth_mode="aml_token", token_signing_key_file=short, endpoint_name="e"), lambda: True
        )


@pytest.mark.parametrize(
    ("limit", "count", "shares"),
    [
        pytest.param(8, 1, [8], id="one-worker"),
        pytest.param(8, 2, [4, 4], id="even"),
        pytest.param(5, 2, [3, 2], id="remainder-to-first"),
        pytest.param(1, 2, [1, 1], id="floor-one"),
    ],
)
def test_for_worker_splits_the_instance_limit(limit, count, shares):
    s = FrontendSettings(max_concurrent_requests=limit)
    assert [s.for_worker(i, count).max_concurrent_requests for i in range(count)] == shares
    with pytest.raises(FrontendSettingsError, match="worker index 2 of 2"):
        s.for_worker(2, 2)
