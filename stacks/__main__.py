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
from components.builders.batch_job import templates_hash
from components.builders.stack import (
    StackBatchDeployment,
    StackBatchEndpoint,
    StackBatchPlatform,
    StackNamespace,
    StackOnlineDeployment,
    StackOnlineEndpoint,
    StackPool,
    check_names,
    walk_stack,
)
from components.builders.stack_config import CONFIG_KEYS, settings_from_config
from components.builders.stack_resolve import RUNNER_IMAGE_PLACEHOLDER, resolve_stack
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
    """Create one component per unit of the stack's walk (the same walk the offline plan renders).

    Exports per endpoint its URIs and keys (secrets), and per deployment ``<endpoint>.<deployment>.image``: the image
    its pods run, which the promote workflow (examples/ci/promote.yml) reads from a stack that builds its images.
    """
    settings = settings_from_config(read_config(), f"stack {pulumi.get_stack()}")
    resolved = resolve_stack(settings, REPO_ROOT)
    check_names(settings, resolved)
    cluster = settings.cluster()

    opts = pulumi.ResourceOptions()  # once the namespace exists: after it
    online: dict[str, OnlineEndpoint] = {}
    platform: BatchPlatform | None = None
    templates: dict[str, list[pulumi.Output[Any]]] = {}  # batch endpoint -> its deployments' template ConfigMaps
    for unit in walk_stack(settings, resolved):
        match unit:
            case StackNamespace(namespace=namespace):
                opts = pulumi.ResourceOptions(depends_on=[EndpointNamespace("namespace", namespace)])
            case StackPool(pool=pool, instances=instances, kueue_flavor=flavor):
                kueue = flavor is not None
                args = ComputePoolArgs(
                    pool, instances, cluster, [settings.namespace], settings.gpu_quota, kueue, flavor
                )
                ComputePool(f"pool-{pool}", args, opts)
            case StackBatchPlatform(resolved=r):
                platform = BatchPlatform(
                    "batch",
                    BatchPlatformArgs(
                        settings.namespace,
                        r.batch_quotas,
                        r.options,
                        settings.create_priority_classes,
                        r.job_api_image,
                        r.job_api_build,
                        r.runner_image,
                        r.runner_build,
                    ),
                    opts,
                )
            case StackOnlineEndpoint(endpoint=r):
                name = r.endpoint.name
                endpoint = online[name] = OnlineEndpoint(
                    name, OnlineEndpointArgs(r.endpoint, r.specs, cluster, r.rotation), opts
                )
                pulumi.export(f"{name}.scoringUri", endpoint.scoring_uri)
                pulumi.export(f"{name}.swaggerUri", endpoint.swagger_uri)
                pulumi.export(f"{name}.primaryKey", endpoint.primary_key)
                pulumi.export(f"{name}.secondaryKey", endpoint.secondary_key)
            case StackOnlineDeployment(endpoint=r, deployment=d):
                deployment = OnlineDeployment(
                    f"{r.endpoint.name}-{d.spec.name}",
                    OnlineDeploymentArgs(
                        r.endpoint, d.spec, d.instance, cluster, d.image, d.build, online[r.endpoint.name].secret
                    ),
                    opts,
                )
                # What the pods run (the pushed digest where the stack builds): `endpoints promote --image` takes it.
                pulumi.export(f"{r.endpoint.name}.{d.spec.name}.image", deployment.image)
            case StackBatchDeployment(endpoint=b, deployment=bd):
                assert platform is not None  # the walk yields the platform before any batch unit
                build = bd.build
                if build is not None and build.args.get("BASE_IMAGE") == RUNNER_IMAGE_PLACEHOLDER:
                    build = replace(build, args={**build.args, "BASE_IMAGE": platform.runner_image})
                batch_deployment = BatchDeployment(
                    f"{b.endpoint.name}-{bd.spec.name}",
                    BatchDeploymentArgs(b.endpoint, bd.spec, bd.instance, cluster, bd.image, build, resolved.options),
                    opts,
                )
                pulumi.export(f"{b.endpoint.name}.{bd.spec.name}.image", batch_deployment.image)
                templates.setdefault(b.endpoint.name, []).append(
                    pulumi.Output.all(batch_deployment.config_map_name, batch_deployment.config_map_data).apply(
                        lambda t: {"metadata": {"name": t[0]}, "data": t[1]}
                    )
                )
            case StackBatchEndpoint(endpoint=b):
                assert platform is not None
                name = b.endpoint.name
                batch_endpoint = BatchEndpoint(
                    name,
                    BatchEndpointArgs(
                        b.endpoint,
                        b.deployment_names,
                        cluster,
                        platform.job_api_image,
                        resolved.options,
                        create_volume_claim=False,  # the stack's claim, from BatchPlatform
                        replicas=b.job_api_replicas,
                        templates_hash=pulumi.Output.all(*templates.get(name, [])).apply(templates_hash),
                        private=b.private,
                        rotation=b.rotation,
                    ),
                    opts,
                )
                pulumi.export(f"{name}.jobsUri", batch_endpoint.jobs_uri)
                pulumi.export(f"{name}.primaryKey", batch_endpoint.primary_key)
                pulumi.export(f"{name}.secondaryKey", batch_endpoint.secondary_key)


if __name__ == "__main__":
    main()
