"""``endpoints token``: minted tokens are accepted by the frontend; bad inputs are named."""

from __future__ import annotations

import json
import re
import time

import jwt
import pytest
from frontend_serve import ENDPOINT, SIGNING_KEY
from typer.testing import CliRunner

from endpoints.cli.main import build_app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(build_app(), ["token", *args])


def _text(result) -> str:
    """The output with rich's error box and line wrapping undone."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def test_minted_token_has_the_contract_claims_and_is_accepted(served, client, signing_key_file):
    before = int(time.time())
    result = _invoke(ENDPOINT, "--signing-key-file", str(signing_key_file))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, SIGNING_KEY, algorithms=["HS256"], audience=ENDPOINT)
    assert claims["aud"] == ENDPOINT
    assert before + 3600 <= claims["exp"] <= int(time.time()) + 3600
    assert SIGNING_KEY.decode() not in result.output
    with served(auth_mode="aml_token", token_signing_key_file=signing_key_file, endpoint_name=ENDPOINT) as s:
        r = client.post(s.url + "/score", json={}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        other = _invoke("other-endpoint", "--signing-key-file", str(signing_key_file)).stdout.strip()
        r = client.post(s.url + "/score", json={}, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 401


def test_json_output_and_lifetime(signing_key_file):
    result = _invoke(
        ENDPOINT, "--signing-key-file", str(signing_key_file), "--lifetime-s", "120", "--json", "--subject", "ci"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["tokenType"] == "Bearer"
    claims = jwt.decode(out["accessToken"], SIGNING_KEY, algorithms=["HS256"], audience=ENDPOINT)
    assert claims["exp"] == out["expiryTimeUtc"]
    assert claims["exp"] - claims["iat"] == 120
    assert claims["sub"] == "ci"
    assert out["refreshAfterTimeUtc"] == out["expiryTimeUtc"] - 60


@pytest.mark.parametrize("layout", ["keys-dir", "endpoint-state", "project-state"])
def test_finds_the_key_in_a_local_state_folder(tmp_path, layout):
    base = {
        "keys-dir": tmp_path / "k",
        "endpoint-state": tmp_path / "k" / "keys",
        "project-state": tmp_path / "k" / ENDPOINT / "keys",
    }[layout]
    base.mkdir(parents=True)
    (base / "token-signing-key").write_bytes(SIGNING_KEY)
    result = _invoke(ENDPOINT, "--state-dir", str(tmp_path / "k"))
    assert result.exit_code == 0, result.output
    jwt.decode(result.stdout.strip(), SIGNING_KEY, algorithms=["HS256"], audience=ENDPOINT)


def test_bad_inputs_are_named(tmp_path):
    result = _invoke(ENDPOINT)
    assert result.exit_code == 2
    assert "give exactly one of --signing-key-file and --state-dir" in _text(result)
    short = tmp_path / "short"
    short.write_bytes(b"0123456789")
    result = _invoke(ENDPOINT, "--signing-key-file", str(short))
    assert result.exit_code == 2
    assert "signing key is 10 bytes; need at least 32" in _text(result)
    assert "0123456789" not in _text(result)
    result = _invoke(ENDPOINT, "--state-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "no token-signing-key found" in _text(result)
    result = _invoke(ENDPOINT, "--signing-key-file", str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert "cannot read the signing key" in _text(result)
