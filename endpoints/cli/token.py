"""``endpoints token``: mint an aml_token for an endpoint (HS256, ``aud`` = endpoint name, 1 h by default)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from contract.keys import SIGNING_KEY_FILE
from serving.frontend.auth import MIN_SIGNING_KEY_BYTES, mint_aml_token


def signing_key_candidates(state_dir: Path, endpoint: str) -> list[Path]:
    """Where a local endpoint state folder may keep the signing key, most specific first.

    ``state_dir`` may be the endpoint's keys folder, the endpoint's state folder (``keys/`` inside), or the
    project's ``.endpoints`` folder (``<endpoint>/keys/`` inside).
    """
    return [
        state_dir / SIGNING_KEY_FILE,
        state_dir / "keys" / SIGNING_KEY_FILE,
        state_dir / endpoint / "keys" / SIGNING_KEY_FILE,
        state_dir / endpoint / SIGNING_KEY_FILE,
    ]


def read_signing_key(signing_key_file: Path | None, state_dir: Path | None, endpoint: str) -> bytes:
    """The signing key from the file, or found in the state folder.

    Raises:
        typer.BadParameter: Neither or both options given, file missing, or key too short.
    """
    if (signing_key_file is None) == (state_dir is None):
        raise typer.BadParameter("give exactly one of --signing-key-file and --state-dir")
    if signing_key_file is not None:
        path, option = signing_key_file, "--signing-key-file"
    else:
        assert state_dir is not None
        found = [p for p in signing_key_candidates(state_dir, endpoint) if p.is_file()]
        if not found:
            tried = ", ".join(str(p) for p in signing_key_candidates(state_dir, endpoint))
            raise typer.BadParameter(
                f"{state_dir}: no {SIGNING_KEY_FILE} found (tried {tried})", param_hint="--state-dir"
            )
        path, option = found[0], "--state-dir"
    try:
        key = path.read_bytes().strip()
    except OSError as e:
        raise typer.BadParameter(f"{path}: cannot read the signing key: {e.strerror}", param_hint=option) from e
    if len(key) < MIN_SIGNING_KEY_BYTES:
        # The length only: the key itself never appears in output.
        raise typer.BadParameter(
            f"{path}: signing key is {len(key)} bytes; need at least {MIN_SIGNING_KEY_BYTES}", param_hint=option
        )
    return key


def token(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (the token's audience).", show_default=False)],
    signing_key_file: Annotated[
        Path | None, typer.Option("--signing-key-file", help="File holding the endpoint's token signing key.")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Local endpoint state folder (.endpoints, .endpoints/NAME or its keys/)."),
    ] = None,
    lifetime_s: Annotated[
        int, typer.Option("--lifetime-s", min=1, max=86400, help="Seconds until the token expires.")
    ] = 3600,
    subject: Annotated[str | None, typer.Option("--subject", help="Optional 'sub' claim.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print Azure's get-credentials JSON shape.")] = False,
) -> None:
    """Mint an aml_token for ENDPOINT: print it, or with --json the token and its expiry."""
    key = read_signing_key(signing_key_file, state_dir, endpoint)
    access_token, expires = mint_aml_token(key, endpoint, lifetime_s=lifetime_s, subject=subject)
    if as_json:
        expiry = dt.datetime.fromtimestamp(expires, dt.UTC)
        refresh = expiry - dt.timedelta(seconds=lifetime_s // 2)
        typer.echo(
            json.dumps(
                {
                    "accessToken": access_token,
                    "tokenType": "Bearer",
                    "expiryTimeUtc": int(expires),
                    "expiryTimeIso": expiry.isoformat().replace("+00:00", "Z"),
                    "refreshAfterTimeUtc": int(refresh.timestamp()),
                }
            )
        )
    else:
        typer.echo(access_token)


def register(app: typer.Typer) -> None:
    """Add ``endpoints token`` to the CLI."""
    app.command("token")(token)
