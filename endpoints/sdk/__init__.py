"""Python SDK: online and batch endpoints, local endpoints and cluster stacks, as the CLI drives them.

    from endpoints.sdk import OnlineEndpointClient, BatchEndpointClient, Workspace, LocalEndpoints

Walkthrough: docs/sdk.md. Names are imported on first use, so ``endpoints batch`` does not load the local
supervisor, and importing this package never loads ``pulumi`` or ``kubernetes`` (:class:`Workspace` imports them
where it uses them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from endpoints.sdk.batch import BatchEndpointClient, BatchJob
    from endpoints.sdk.errors import EndpointError, StaleChangeError
    from endpoints.sdk.local import LocalEndpoints
    from endpoints.sdk.online import AsyncOnlineEndpointClient, InvokeResult, OnlineEndpointClient, RetryPolicy
    from endpoints.sdk.workspace import Workspace

_WHERE = {
    "AsyncOnlineEndpointClient": "online",
    "BatchEndpointClient": "batch",
    "BatchJob": "batch",
    "EndpointError": "errors",
    "InvokeResult": "online",
    "LocalEndpoints": "local",
    "OnlineEndpointClient": "online",
    "RetryPolicy": "online",
    "StaleChangeError": "errors",
    "Workspace": "workspace",
}
__all__ = [
    "AsyncOnlineEndpointClient",
    "BatchEndpointClient",
    "BatchJob",
    "EndpointError",
    "InvokeResult",
    "LocalEndpoints",
    "OnlineEndpointClient",
    "RetryPolicy",
    "StaleChangeError",
    "Workspace",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'endpoints.sdk' has no attribute {name!r}")
    return getattr(importlib.import_module(f"endpoints.sdk.{module}"), name)
