"""Reading the local endpoints of one state folder: their names, where a running one listens, its credential.

:class:`LocalAccess` is what a client needs (``OnlineEndpointClient.local``);
:class:`~endpoints.sdk.local.LocalEndpoints` adds starting, stopping, key rotation and logs. Nothing here starts or
stops a process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from endpoints.local.state import SIGNING_KEY_FILE, EndpointState, StateDir, known_endpoints, read_keys, state_root
from endpoints.local.supervisor import DEFAULT_PORT
from endpoints.sdk.errors import EndpointError, spec_message
from endpoints.specs.online import primary_deployment


def endpoint_urls(state: EndpointState) -> dict[str, str]:
    """Scoring and swagger URIs of a local endpoint (its router)."""
    port = state.router.port if state.router else DEFAULT_PORT
    # As on the cluster: the path of the deployment taking most live traffic (a custom container's scoring route).
    primary = primary_deployment(state.traffic, sorted(state.deployments))
    path = state.scoring_paths.get(primary, "/score") if primary is not None else "/score"
    return {
        "scoring_uri": f"http://127.0.0.1:{port}{path}",
        "swagger_uri": f"http://127.0.0.1:{port}/swagger.json",
    }


class LocalAccess:
    """The local endpoints of one state folder, read only.

    Args:
        state_dir: The state folder (default ``$ENDPOINTS_STATE_DIR``, else ``./.endpoints``).
    """

    def __init__(self, state_dir: Path | str | None = None) -> None:
        self.root = state_root(Path(state_dir) if state_dir is not None else None)

    # ------------------------------------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        """Names of the endpoints with state here (running or stopped)."""
        return known_endpoints(self.root)

    def resolve_name(self, name_or_folder: str | Path) -> str:
        """An endpoint name, given a name or an endpoint folder (its ``endpoint.yml`` names it).

        Raises:
            EndpointError: no endpoint of that name has state here, or the folder's spec is invalid.
        """
        path = Path(name_or_folder)
        if path.is_dir() and (path / "endpoint.yml").is_file():
            from endpoints.errors import SpecError
            from endpoints.project import load_endpoint_project

            try:
                name = load_endpoint_project(path).endpoint.name
            except SpecError as e:
                raise EndpointError(spec_message(e)) from e
        else:
            name = str(name_or_folder)
        if name not in self.names():
            known = ", ".join(self.names()) or "none"
            raise EndpointError(f"no local endpoint named {name!r} in {self.root} (known: {known})")
        return name

    def _state(self, name: str) -> tuple[StateDir, EndpointState]:
        dir_ = StateDir(self.root, self.resolve_name(name))
        state = dir_.load()
        if state is None:
            raise EndpointError(f"no local endpoint named {name!r} in {self.root}")
        return dir_, state

    def _running(self, name: str) -> tuple[StateDir, EndpointState]:
        dir_, state = self._state(name)
        if state.router is None or not state.router.alive():
            raise EndpointError(f"endpoint {name} is not running; start it with `endpoints local up ENDPOINT_DIR`")
        return dir_, state

    # ------------------------------------------------------------------------------------------ access
    def credentials(self, name: str) -> dict[str, Any]:
        """``{"primaryKey", "secondaryKey"}`` (key auth) or ``{"accessToken", "expiryTimeUtc"}`` (aml_token).

        Raises:
            EndpointError: aad_token endpoints have no local credential (tokens come from the identity provider).
        """
        dir_, state = self._state(name)
        if state.auth_mode == "key":
            return read_keys(dir_.keys_dir)
        if state.auth_mode == "aml_token":
            from serving.frontend.auth import mint_aml_token

            token, expiry = mint_aml_token((dir_.keys_dir / SIGNING_KEY_FILE).read_bytes().strip(), state.endpoint)
            return {"accessToken": token, "tokenType": "Bearer", "expiryTimeUtc": expiry}
        raise EndpointError(f"endpoint {state.endpoint} uses aad_token; get a token from your identity provider")

    def connection(self, name: str) -> tuple[str, Callable[[], str] | None]:
        """Scoring URI and a credential provider (the primary key, or a fresh aml_token per call; None for aad)."""
        dir_, state = self._running(name)
        uri = endpoint_urls(state)["scoring_uri"]
        if state.auth_mode == "key":
            keys_dir = dir_.keys_dir
            return uri, lambda: read_keys(keys_dir)["primaryKey"]
        if state.auth_mode == "aml_token":
            return uri, lambda: str(self.credentials(name)["accessToken"])
        return uri, None
