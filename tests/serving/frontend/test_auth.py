"""Authentication over real sockets: keys (with rotation), aml_token (HS256) and aad_token (OIDC via JWKS)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from frontend_serve import ENDPOINT, PRIMARY, SECONDARY, SIGNING_KEY

from serving.frontend.auth import WatchedFile

UNAUTHORIZED = {"error": "missing or invalid credentials"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    """A JWT assembled by hand (PyJWT refuses to make the malicious ones)."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def _hs256_by_hand(claims: dict, secret: bytes, header: dict | None = None) -> str:
    head = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def _score(client, url: str, credential: str | None, path: str = "/score"):
    headers = {} if credential is None else {"Authorization": f"Bearer {credential}"}
    return client.post(url + path, json={"x": 1}, headers=headers)


# --- key mode ---------------------------------------------------------------------------------------------------


def test_key_mode_accepts_both_keys_and_rejects_everything_else_identically(served, client, keys_dir):
    with served(auth_mode="key", keys_dir=keys_dir) as s:
        for key in (PRIMARY, SECONDARY):
            r = _score(client, s.url, key)
            assert r.status_code == 200, r.text
            assert r.json()["method"] == "POST"
        failures = [
            client.post(s.url + "/score", json={}),
            client.post(s.url + "/score", json={}, headers={"Authorization": PRIMARY}),
            client.post(s.url + "/score", json={}, headers={"Authorization": f"Basic {PRIMARY}"}),
            client.post(s.url + "/score", json={}, headers={"Authorization": "Bearer"}),
            _score(client, s.url, PRIMARY[:-1]),
            _score(client, s.url, PRIMARY + "x"),
            _score(client, s.url, "wrong"),
            _score(client, s.url, "wrong", "/swagger.json"),
            client.get(s.url + "/swagger.json"),
            client.get(s.url + "/anything-else"),
        ]
        for r in failures:
            assert r.status_code == 401
            assert r.json() == UNAUTHORIZED
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["content-type"] == "application/json"
        assert len({r.content for r in failures}) == 1
        r = client.get(s.url + "/swagger.json", headers={"Authorization": f"bearer {SECONDARY}"})
        assert (r.status_code, r.json()) == (200, {"swagger": "2.0"})


def test_health_routes_and_preflight_need_no_credential(served, client, keys_dir):
    with served(auth_mode="key", keys_dir=keys_dir) as s:
        r = client.get(s.url + "/")
        assert (r.status_code, r.text) == (200, "Healthy")
        assert client.head(s.url + "/").status_code == 200
        assert client.get(s.url + "/ready").json() == {"status": "ready"}
        assert client.get(s.url + "/metrics").status_code == 200
        r = client.options(s.url + "/score")
        assert r.status_code == 200


@pytest.fixture
def instant_recheck(monkeypatch):
    """Key files are re-checked on every request (default: at most once a second) so each step is visible at once."""
    monkeypatch.setattr(WatchedFile, "RECHECK_S", 0.0)


def test_rotation_is_picked_up_within_a_second_by_default(served, client, keys_dir):
    with served(auth_mode="key", keys_dir=keys_dir) as s:
        assert _score(client, s.url, PRIMARY).status_code == 200
        (keys_dir / "primary").write_text("r" * 40)
        deadline = time.monotonic() + 1.5
        while _score(client, s.url, "r" * 40).status_code != 200:
            assert time.monotonic() < deadline, "rotated key not accepted within 1.5 s"
            time.sleep(0.05)
        assert _score(client, s.url, PRIMARY).status_code == 401
        assert _score(client, s.url, SECONDARY).status_code == 200


@pytest.mark.usefixtures("instant_recheck")
def test_rotating_one_key_never_rejects_the_other_without_restart(served, client, keys_dir):
    new_primary = "n" * 40
    with served(auth_mode="key", keys_dir=keys_dir) as s:
        assert _score(client, s.url, PRIMARY).status_code == 200
        # Rotate primary in place (truncate + write), checking the secondary in between.
        with open(keys_dir / "primary", "w") as f:
            assert _score(client, s.url, SECONDARY).status_code == 200  # primary empty right now
            f.write(new_primary)
        assert _score(client, s.url, SECONDARY).status_code == 200
        assert _score(client, s.url, new_primary).status_code == 200
        assert _score(client, s.url, PRIMARY).status_code == 401
        # Kubernetes-style update: the file is replaced by rename (new inode), same size and mtime second.
        newer = "m" * 40
        tmp = keys_dir / ".secondary.tmp"
        tmp.write_text(newer)
        os.replace(tmp, keys_dir / "secondary")
        assert _score(client, s.url, newer).status_code == 200
        assert _score(client, s.url, SECONDARY).status_code == 401
        assert _score(client, s.url, new_primary).status_code == 200
        # A missing file disables only that key.
        (keys_dir / "primary").unlink()
        assert _score(client, s.url, newer).status_code == 200
        assert _score(client, s.url, new_primary).status_code == 401


@pytest.mark.usefixtures("instant_recheck")
def test_kubernetes_secret_symlink_swap_is_picked_up(served, client, tmp_path):
    """Mounted Secrets are symlinks into a ..data folder that kubelet swaps atomically."""
    root = tmp_path / "secret"
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "primary").write_text(PRIMARY)
    (root / "v1" / "secondary").write_text(SECONDARY)
    (root / "..data").symlink_to("v1")
    for name in ("primary", "secondary"):
        (root / name).symlink_to(f"..data/{name}")
    with served(auth_mode="key", keys_dir=root) as s:
        assert _score(client, s.url, PRIMARY).status_code == 200
        (root / "v2").mkdir()
        (root / "v2" / "primary").write_text("q" * 40)
        (root / "v2" / "secondary").write_text(SECONDARY)
        (root / "..data_tmp").symlink_to("v2")
        os.replace(root / "..data_tmp", root / "..data")
        assert _score(client, s.url, "q" * 40).status_code == 200
        assert _score(client, s.url, SECONDARY).status_code == 200
        assert _score(client, s.url, PRIMARY).status_code == 401


# --- aml_token ----------------------------------------------------------------------------------------------------


def _aml(claims: dict, key: bytes = SIGNING_KEY, **kw) -> str:
    return jwt.encode(claims, key, algorithm="HS256", **kw)


@pytest.fixture
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def test_aml_token_claims(served, client, signing_key_file, rsa_key):
    now = int(time.time())
    good = {"aud": ENDPOINT, "exp": now + 600}
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cases = {
        "valid": (_aml(good), 200),
        "valid-iat-nbf": (_aml({**good, "iat": now, "nbf": now}), 200),
        "expired-within-leeway": (_aml({**good, "exp": now - 20}), 200),
        "expired": (_aml({**good, "exp": now - 90}), 401),
        "missing-exp": (_aml({"aud": ENDPOINT}), 401),
        "missing-aud": (_aml({"exp": now + 600}), 401),
        "wrong-aud": (_aml({**good, "aud": "other-endpoint"}), 401),
        "aud-list-without-endpoint": (_aml({**good, "aud": ["a", "b"]}), 401),
        "future-nbf": (_aml({**good, "nbf": now + 300}), 401),
        "wrong-key": (_aml(good, b"x" * 48), 401),
        "alg-none": (_unsigned({"alg": "none", "typ": "JWT"}, good), 401),
        "alg-None-case": (_unsigned({"alg": "None"}, good), 401),
        "rs256-not-accepted": (jwt.encode(good, rsa_pem, algorithm="RS256"), 401),
        "hs512": (jwt.encode(good, SIGNING_KEY + SIGNING_KEY, algorithm="HS512"), 401),
        "tampered-payload": (_aml(good).rsplit(".", 2)[0][:-2] + "xx." + _aml(good).rsplit(".", 1)[1], 401),
        "garbage": ("not.a.jwt", 401),
    }
    with served(auth_mode="aml_token", token_signing_key_file=signing_key_file, endpoint_name=ENDPOINT) as s:
        got = {name: _score(client, s.url, token).status_code for name, (token, _) in cases.items()}
        assert got == {name: status for name, (_, status) in cases.items()}
        assert _score(client, s.url, "not.a.jwt").json() == UNAUTHORIZED


@pytest.mark.usefixtures("instant_recheck")
def test_aml_token_signing_key_rotation(served, client, signing_key_file):
    now = int(time.time())
    old = _aml({"aud": ENDPOINT, "exp": now + 600})
    with served(auth_mode="aml_token", token_signing_key_file=signing_key_file, endpoint_name=ENDPOINT) as s:
        assert _score(client, s.url, old).status_code == 200
        signing_key_file.write_bytes(b"z" * 48)
        assert _score(client, s.url, old).status_code == 401
        assert _score(client, s.url, _aml({"aud": ENDPOINT, "exp": now + 600}, b"z" * 48)).status_code == 200


# --- aad_token (OIDC) -------------------------------------------------------------------------------------------

ISSUER = "https://login.example/tenant/v2.0"
AUDIENCE = "api://cars"


class _Jwks:
    def __init__(self) -> None:
        self.document: dict = {"keys": []}
        self.hits = 0


@pytest.fixture
def jwks_server(rsa_key, ec_key) -> Iterator[tuple[str, _Jwks]]:
    """A JWKS document on a loopback HTTP server, with one RSA and one EC key."""
    state = _Jwks()
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    state.document = {
        "keys": [
            {**rsa_jwk, "kid": "rsa1", "use": "sig", "alg": "RS256"},
            {**ec_jwk, "kid": "ec1", "use": "sig", "alg": "ES256"},
        ]
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            body = json.dumps(state.document).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/discovery/keys", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_aad_token_claims_and_algorithms(served, client, jwks_server, rsa_key, ec_key):
    url, state = jwks_server
    now = int(time.time())
    good = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "sub": "user"}
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def rs(claims: dict, key=rsa_key, kid: str | None = "rsa1", alg: str = "RS256") -> str:
        headers = {} if kid is None else {"kid": kid}
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    cases = {
        "rs256": (rs(good), 200),
        "es256": (rs(good, ec_key, "ec1", "ES256"), 200),
        "wrong-iss": (rs({**good, "iss": "https://evil.example"}), 401),
        "missing-iss": (rs({k: v for k, v in good.items() if k != "iss"}), 401),
        "wrong-aud": (rs({**good, "aud": "api://other"}), 401),
        "expired": (rs({**good, "exp": now - 120}), 401),
        "missing-exp": (rs({k: v for k, v in good.items() if k != "exp"}), 401),
        "future-nbf": (rs({**good, "nbf": now + 300}), 401),
        "other-key-same-kid": (rs(good, other_rsa), 401),
        "unknown-kid": (rs(good, other_rsa, "rsa2"), 401),
        "no-kid": (rs(good, kid=None), 401),
        "rs512": (rs(good, alg="RS512"), 401),
        "kid-of-ec-with-rsa-alg": (rs(good, kid="ec1"), 401),
        # Algorithm confusion: HMAC keyed with the RSA public key, the classic RS->HS downgrade.
        "hs256-with-public-key": (_hs256_by_hand(good, public_pem, {"alg": "HS256", "kid": "rsa1"}), 401),
        "alg-none": (_unsigned({"alg": "none", "kid": "rsa1"}, good), 401),
    }
    with served(auth_mode="aad_token", oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=url) as s:
        got = {name: _score(client, s.url, token).status_code for name, (token, _) in cases.items()}
        assert got == {name: status for name, (_, status) in cases.items()}
        # The JWKS is cached: the first token fetched it; the unknown kid forced at most one refresh.
        hits = state.hits
        assert 1 <= hits <= 2
        for _ in range(5):
            assert _score(client, s.url, rs(good)).status_code == 200
        assert state.hits == hits


def test_aad_token_unreachable_jwks_is_401_not_5xx(served, client, rsa_key):
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
        rsa_key,
        algorithm="RS256",
        headers={"kid": "rsa1"},
    )
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/keys"  # bound, not listening: connection refused
        with served(auth_mode="aad_token", oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=dead) as s:
            r = _score(client, s.url, token)
            assert (r.status_code, r.json()) == (401, UNAUTHORIZED)


def test_no_auth_mode_passes_everything(served, client):
    with served() as s:
        assert client.post(s.url + "/score", json={}).status_code == 200
        assert client.get(s.url + "/swagger.json").status_code == 200


def test_key_file_path_is_not_required_to_exist_for_none(tmp_path: Path, served, client):
    with served(auth_mode="none", keys_dir=tmp_path / "absent") as s:
        assert client.post(s.url + "/score", json={}).status_code == 200
