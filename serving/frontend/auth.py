"""Credential checks for ``Authorization: Bearer <credential>``: keys, aml_token (HS256) and aad_token (OIDC).

Every check answers only yes or no; the caller turns every "no" into the same 401 so that a client learns
nothing about why its credential failed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from contract.keys import KEY_FILES
from serving.frontend.settings import FrontendSettings, FrontendSettingsError

if TYPE_CHECKING:
    import jwt

# PyJWT (with cryptography, ~60 ms to import) is imported where a token is checked or minted: key mode and no-auth
# workers never need it, and the import would sit in every worker's cold start.

log = logging.getLogger("serving.frontend.auth")

# Leeway for exp/nbf/iat against clock skew between the token issuer and this pod (the issue allows <= 60 s).
TOKEN_LEEWAY_S = 30
# Algorithms are fixed per mode and never read from the token (alg confusion, alg none).
AML_TOKEN_ALGORITHMS = ("HS256",)
AAD_TOKEN_ALGORITHMS = ("RS256", "ES256")
# HS256 keys shorter than the hash output are brute-forceable (RFC 7518 section 3.2).
MIN_SIGNING_KEY_BYTES = 32
# How long signing keys fetched from the JWKS URL are trusted before the next fetch.
JWKS_CACHE_S = 300.0


class Authenticator(Protocol):
    """Checks one bearer credential."""

    async def check(self, credential: str) -> bool:
        """Return True when ``credential`` is valid; never raise for a bad credential."""
        ...


class WatchedFile:
    """A small secret file re-read when it changes (mtime, inode, size), checked with one ``stat`` per use.

    Kubernetes updates a mounted Secret by swapping a symlink, which changes the inode; an in-place rewrite
    changes mtime. A missing or empty file reads as ``None`` so that one key being rewritten never rejects
    the other.
    """

    RECHECK_S = 1.0

    def __init__(self, path: Path) -> None:
        """Watch ``path`` (it may not exist yet)."""
        self.path = path
        self._stamp: tuple[int, int, int, int] | None = None
        self._value: bytes | None = None
        self._next_check = 0.0

    def read(self) -> bytes | None:
        """The file's content without surrounding whitespace, or None when missing or empty.

        The file is checked at most every ``RECHECK_S`` seconds (default 1 s): a changed key is in use within a
        second, and the hot path costs one clock read instead of a ``stat`` per request.
        """
        now = time.monotonic()
        if now < self._next_check:
            return self._value
        self._next_check = now + self.RECHECK_S
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self._value = None, None
            return None
        stamp = (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                value = self.path.read_bytes().strip()
            except OSError:
                value = b""
            self._stamp, self._value = stamp, value or None
        return self._value


class KeyAuthenticator:
    """Key mode: the credential must equal the primary or the secondary key (constant-time comparison)."""

    def __init__(self, keys_dir: Path) -> None:
        """Read keys from ``keys_dir/primary`` and ``keys_dir/secondary``."""
        self.files = [WatchedFile(keys_dir / name) for name in KEY_FILES]

    async def check(self, credential: str) -> bool:
        """True when the credential matches either key; both are always compared."""
        return self.check_now(credential)

    def check_now(self, credential: str) -> bool:
        """:meth:`check` without the coroutine (nothing here waits): the frontend's per-request path."""
        given = credential.encode("utf-8", "surrogateescape")
        ok = False
        for watched in self.files:
            key = watched.read()
            # Compare against every key so the time taken does not tell which one matched.
            if key is not None and hmac.compare_digest(given, key):
                ok = True
        return ok


class AmlTokenAuthenticator:
    """aml_token mode: HS256 JWT signed with the endpoint's key, ``aud`` = endpoint name, ``exp`` required."""

    def __init__(self, signing_key_file: Path, endpoint_name: str) -> None:
        """Verify with the key in ``signing_key_file`` (re-read when it changes) for ``endpoint_name``."""
        import jwt  # noqa: F401  (imported now, not on the first request)

        self.file = WatchedFile(signing_key_file)
        self.endpoint_name = endpoint_name
        self._short_key_logged = False

    async def check(self, credential: str) -> bool:
        """True when the token verifies."""
        key = self.file.read()
        if key is None or len(key) < MIN_SIGNING_KEY_BYTES:
            if not self._short_key_logged:
                log.error(
                    "token signing key file %s is missing or shorter than %d bytes; rejecting tokens",
                    self.file.path,
                    MIN_SIGNING_KEY_BYTES,
                )
                self._short_key_logged = True
            return False
        self._short_key_logged = False
        import jwt

        try:
            claims = jwt.decode(
                credential,
                key,
                algorithms=list(AML_TOKEN_ALGORITHMS),
                audience=self.endpoint_name,
                leeway=TOKEN_LEEWAY_S,
                options={"require": ["exp", "aud"]},
            )
        except Exception:  # every failure, whatever its type, is the same 401
            return False
        return _numeric_dates(claims)


@dataclass
class _CachedKey:
    key: jwt.PyJWK
    expires_at: float


class AadTokenAuthenticator:
    """aad_token mode: RS256/ES256 JWT from an OIDC issuer, keys from its JWKS URL (cached)."""

    def __init__(self, issuer: str, audience: str, jwks_url: str, *, fetch_timeout_s: float = 5.0) -> None:
        """Verify ``iss`` = issuer and ``aud`` = audience with keys fetched from ``jwks_url``.

        Args:
            issuer: Expected ``iss``.
            audience: Expected ``aud``.
            jwks_url: JWKS document URL; fetched on the first token and when an unknown ``kid`` appears
                (at most once per 30 s, PyJWKClient's cooldown), cached ``JWKS_CACHE_S`` seconds.
            fetch_timeout_s: Timeout of one JWKS fetch (default 5 s).
        """
        import jwt

        self.issuer = issuer
        self.audience = audience
        self.client = jwt.PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=JWKS_CACHE_S, timeout=fetch_timeout_s)
        self._keys: dict[str, _CachedKey] = {}

    async def _key_for(self, kid: str) -> jwt.PyJWK | None:
        cached = self._keys.get(kid)
        now = time.monotonic()
        if cached is not None and cached.expires_at > now:
            return cached.key
        try:
            # PyJWKClient fetches with blocking urllib: keep it off the event loop.
            key = await asyncio.to_thread(self.client.get_signing_key, kid)
        except Exception as e:
            log.warning("no signing key for kid %r from the JWKS URL: %s", kid[:64], e)
            return None
        if len(self._keys) > 64:  # bound the cache; keys rotate rarely
            self._keys.clear()
        self._keys[kid] = _CachedKey(key, now + JWKS_CACHE_S)
        return key

    async def check(self, credential: str) -> bool:
        """True when the token verifies."""
        import jwt

        try:
            header = jwt.get_unverified_header(credential)
            kid = header.get("kid")
            if not isinstance(kid, str) or header.get("alg") not in AAD_TOKEN_ALGORITHMS:
                return False
            key = await self._key_for(kid)
            if key is None:
                return False
            claims = jwt.decode(
                credential,
                key,
                algorithms=list(AAD_TOKEN_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=TOKEN_LEEWAY_S,
                options={"require": ["exp", "aud", "iss"]},
            )
        except Exception:  # every failure, whatever its type, is the same 401
            return False
        return _numeric_dates(claims)


def _numeric_dates(claims: dict[str, Any]) -> bool:
    """True when ``exp``, ``nbf`` and ``iat`` (where present) are JSON numbers, as RFC 7519 section 2 requires.

    PyJWT converts them with ``int()``, so ``"exp": "9999999999"`` (a string) would pass its checks.
    """
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return False
    return True


def build_authenticator(settings: FrontendSettings) -> Authenticator | None:
    """The authenticator for ``settings.auth_mode`` (None for ``none``), checking its inputs exist.

    Raises:
        FrontendSettingsError: The keys folder or the signing key file is missing or unusable.
    """
    if settings.auth_mode == "none":
        return None
    if settings.auth_mode == "key":
        assert settings.keys_dir is not None  # checked by FrontendSettings
        if not settings.keys_dir.is_dir():
            raise FrontendSettingsError(f"ENDPOINTS_KEYS_DIR={str(settings.keys_dir)!r}: not a folder")
        auth = KeyAuthenticator(settings.keys_dir)
        if all(f.read() is None for f in auth.files):
            raise FrontendSettingsError(
                f"ENDPOINTS_KEYS_DIR={str(settings.keys_dir)!r}: neither 'primary' nor 'secondary' holds a key"
            )
        return auth
    if settings.auth_mode == "aml_token":
        assert settings.token_signing_key_file is not None and settings.endpoint_name
        key = WatchedFile(settings.token_signing_key_file).read()
        if key is None or len(key) < MIN_SIGNING_KEY_BYTES:
            raise FrontendSettingsError(
                f"ENDPOINTS_TOKEN_SIGNING_KEY_FILE={str(settings.token_signing_key_file)!r}: missing, empty or "
                f"shorter than {MIN_SIGNING_KEY_BYTES} bytes"
            )
        return AmlTokenAuthenticator(settings.token_signing_key_file, settings.endpoint_name)
    assert settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url
    return AadTokenAuthenticator(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url)


def parse_bearer(value: bytes | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header value, or None."""
    if not value:
        return None
    scheme, _, credential = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    credential = credential.strip()
    if not credential or len(credential) > 16384:
        return None
    return credential.decode("latin-1")


def mint_aml_token(
    signing_key: bytes,
    endpoint_name: str,
    *,
    lifetime_s: int = 3600,
    subject: str | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """Mint an aml_token: HS256 JWT with ``aud`` = endpoint name and ``exp`` = now + lifetime.

    Args:
        signing_key: The endpoint's token signing key (at least 32 bytes).
        endpoint_name: The endpoint's name (the token's audience).
        lifetime_s: Seconds until expiry (default 3600, Azure's aml_token lifetime).
        subject: Optional ``sub`` claim (default none).
        now: Issue time as a UNIX timestamp (default: the current time).

    Returns:
        The token and its expiry as a UNIX timestamp.

    Raises:
        ValueError: The key is too short or the lifetime is not positive.
    """
    if len(signing_key) < MIN_SIGNING_KEY_BYTES:
        raise ValueError(f"signing key: {len(signing_key)} bytes; need at least {MIN_SIGNING_KEY_BYTES}")
    if lifetime_s <= 0:
        raise ValueError(f"lifetime: got {lifetime_s} s; must be positive")
    import jwt

    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"aud": endpoint_name, "iat": issued, "nbf": issued, "exp": issued + lifetime_s}
    if subject:
        claims["sub"] = subject
    return jwt.encode(claims, signing_key, algorithm="HS256"), issued + lifetime_s
