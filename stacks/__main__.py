"""The Pulumi program: read the stack's typed config, create the components. No logic of its own.

Pulumi runs this file as ``__main__`` (``pulumi preview`` / ``pulumi up`` with ``main: stacks/``); importing it
runs nothing, so tests call :func:`main` under ``pulumi.runtime.set_mocks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi

from components.batch_deployment import BatchDeployment, BatchDeploymentArgs
from components.batch_endpoint import BatchEndpoint, BatchEndpointArgs
from components.batch_platform import BatchPlatform, BatchPlatformArgs
from components.builders.batch import batch_flavor_name, templates_hash
from components.builders.stack import (
    CONFIG_KEYS,
    RUNNER_IMAGE_PLACEHOLDER,
    compute_pools,
    resolve_stack,
    settings_from_config,
)
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
    """Create the stack's namespace, compute pools, batch platform, endpoints and deployments; export URIs and keys."""
    settings = settings_from_config(read_config(), f"stack {pulumi.get_stack()}")
    resolved = resolve_stack(settings, REPO_ROOT)
    cluster = settings.cluster()

    depends: list[pulumi.Resource] = []
    if settings.create_namespace:
        depends.append(EndpointNamespace("namespace", settings.namespace))
    after_ns = pulumi.ResourceOptions(depends_on=depends)
    for pool, (instances, kueue) in compute_pools(resolved).items():
        flavor = batch_flavor_name(settings.namespace, pool) if kueue else None
        args = ComputePoolArgs(pool, instances, cluster, [settings.namespace], settings.gpu_quota, kueue, flavor)
        ComputePool(f"pool-{pool}", args, after_ns)
    for r in resolved.online:
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
    if not resolved.batch:
        return
    platform = BatchPlatform(
        "batch",
        BatchPlatformArgs(
            settings.namespace,
            resolved.batch_quotas,
            resolved.options,
            settings.create_priority_classes,
            resolved.job_api_image,
            resolved.job_api_build,
            resolved.runner_image,
            resolved.runner_build,
        ),
        after_ns,
    )
    for b in resolved.batch:
        config_maps = []
        for bd in b.deployments:
            build = bd.build
            if build is not None and build.args.get("BASE_IMAGE") == RUNNER_IMAGE_PLACEHOLDER:
                build = replace(build, args={**build.args, "BASE_IMAGE": platform.runner_image})
            deployment = BatchDeployment(
                f"{b.endpoint.name}-{bd.spec.name}",
                BatchDeploymentArgs(b.endpoint, bd.spec, bd.instance, cluster, bd.image, build, resolved.options),
                after_ns,
            )
            config_maps.append(
                pulumi.Output.all(deployment.config_map_name, deployment.config_map_data).apply(
                    lambda t: {"metadata": {"name": t[0]}, "data": t[1]}
                )
            )
        endpoint_b = BatchEndpoint(
            b.endpoint.name,
            BatchEndpointArgs(
                b.endpoint,
                b.deployment_names,
                cluster,
                platform.job_api_image,
                resolved.options,
                create_volume_claim=False,  # the stack's claim, from BatchPlatform
                replicas=b.job_api_replicas,
                templates_hash=pulumi.Output.all(*config_maps).apply(templates_hash),
                private=b.private,
                rotation=b.rotation,
            ),
            after_ns,
        )
        pulumi.export(f"{b.endpoint.name}.jobsUri", endpoint_b.jobs_uri)
        pulumi.export(f"{b.endpoint.name}.primaryKey", endpoint_b.primary_key)
        pulumi.export(f"{b.endpoint.name}.secondaryKey", endpoint_b.secondary_key)


if __name__ == "__main__":
    main()
