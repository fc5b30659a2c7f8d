"""The Pulumi program: read the stack's typed config, create the components. No logic of its own.

Pulumi runs this file as ``__main__`` (``pulumi preview`` / ``pulumi up`` with ``main: stacks/``); importing it
runs nothing, so tests call :func:`main` under ``pulumi.runtime.set_mocks``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from components.builders.stack import CONFIG_KEYS, gpu_pools, resolve_stack, settings_from_config
from components.compute_pool import ComputePool, ComputePoolArgs
from components.endpoint_namespace import EndpointNamespace
from components.online_deployment import OnlineDeployment, OnlineDeploymentArgs
from components.online_endpoint import OnlineEndpoint, OnlineEndpointArgs

REPO_ROOT = Path(__file__).resolve().parent.parent


def read_config() -> dict[str, Any]:
    """Every declared key of the project's config namespace, read with its declared type (unset keys left out)."""
    cfg = pulumi.Config()
    getters: dict[str | None, Callable[[str], Any]] = {
        "string": cfg.get,
        "integer": cfg.get_int,
        "boolean": cfg.get_bool,
        "array": cfg.get_object,
        None: cfg.get_object,  # objects: Pulumi.yaml cannot type them
    }
    values = {key: getters[decl.type](key) for key, decl in CONFIG_KEYS.items()}
    return {k: v for k, v in values.items() if v is not None}


def main() -> None:
    """Create the stack's namespace, compute pools, endpoints and deployments; export URIs and keys."""
    settings = settings_from_config(read_config(), f"stack {pulumi.get_stack()}")
    resolved = resolve_stack(settings, REPO_ROOT)
    cluster = settings.cluster()

    depends: list[pulumi.Resource] = []
    if settings.create_namespace:
        depends.append(EndpointNamespace("namespace", settings.namespace))
    after_ns = pulumi.ResourceOptions(depends_on=depends)
    for pool, instances in gpu_pools(resolved).items():
        ComputePool(
            f"pool-{pool}",
            ComputePoolArgs(pool, instances, cluster, [settings.namespace], settings.gpu_quota),
            after_ns,
        )
    for r in resolved:
        endpoint = OnlineEndpoint(
            r.endpoint.name, OnlineEndpointArgs(r.endpoint, r.specs, cluster, r.rotation), after_ns
        )
        for d in r.deployments:
            OnlineDeployment(
                f"{r.endpoint.name}-{d.spec.name}",
                OnlineDeploymentArgs(r.endpoint, d.spec, d.instance, cluster, d.image, d.build, endpoint.secret),
                after_ns,
            )
        pulumi.export(f"{r.endpoint.name}.scoringUri", endpoint.scoring_uri)
        pulumi.export(f"{r.endpoint.name}.swaggerUri", endpoint.swagger_uri)
        pulumi.export(f"{r.endpoint.name}.primaryKey", endpoint.primary_key)
        pulumi.export(f"{r.endpoint.name}.secondaryKey", endpoint.secondary_key)


if __name__ == "__main__":
    main()
