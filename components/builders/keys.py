"""An endpoint's keys Secret, online and batch alike: its name, its data keys, where pods mount it, the object.

The one home of the Secret's layout: the online builders mount it into the serving pods, the batch builders into the
job API, and the components (``components.endpoint_keys``) fill it with generated keys.
"""

from __future__ import annotations

from typing import Any, Protocol

from components.builders.common import ClusterSettings, endpoint_labels, k8s_name, metadata
from contract.keys import ALL_KEY_FILES

# Where the serving containers and the job API mount the Secret (``ENDPOINTS_KEYS_DIR``).
KEYS_DIR = "/etc/endpoints/keys"


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def keys_secret_name(endpoint_name: str) -> str:
    """The endpoint's keys Secret (the same name and layout for online and batch endpoints)."""
    return k8s_name(endpoint_name, "keys")


def build_keys_secret(
    endpoint: _Named,
    settings: ClusterSettings,
    primary: Any = "<secret:primary>",
    secondary: Any = "<secret:secondary>",
    token_signing_key: Any = "<secret:token-signing-key>",
) -> dict[str, Any]:
    """An endpoint's Secret (online or batch): primary and secondary keys and the aml_token signing key.

    Args:
        endpoint: The endpoint spec (its name).
        settings: Stack settings (namespace).
        primary: Primary key value (default a placeholder; the component passes a secret Pulumi output).
        secondary: Secondary key value (default a placeholder).
        token_signing_key: HS256 signing key for ``aml_token`` (default a placeholder).
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(keys_secret_name(endpoint.name), settings.namespace, endpoint_labels(endpoint.name)),
        "type": "Opaque",
        "stringData": dict(zip(ALL_KEY_FILES, (primary, secondary, token_signing_key), strict=True)),
    }
