"""``BatchEndpoint``: keys Secret (components.endpoint_keys), the job API (ServiceAccount, Role limited to Jobs in its
namespace, RoleBinding, Deployment, Service, PodDisruptionBudget, ingress NetworkPolicy), its HTTPRoute, its Kueue
LocalQueue and (alone, outside a stack) the output volume claim; outputs the jobs URI and the keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.builders.batch_job import build_runner_egress_policy
from components.builders.batch_job_api import (
    build_job_api_egress_policy,
    build_job_api_ingress_policy,
    build_job_api_objects,
    build_job_api_pdb,
    build_job_api_route,
    job_api_name,
    jobs_uri,
)
from components.builders.batch_options import BatchOptions, build_volume_claim
from components.builders.batch_queues import build_endpoint_local_queue, queue_name
from components.builders.common import ClusterSettings
from components.builders.keys import build_keys_secret, keys_secret_name
from components.builders.stack_config import KeyRotation
from components.endpoint_keys import create_endpoint_keys
from components.kubernetes_objects import create_object
from endpoints.specs import BatchEndpoint as BatchEndpointSpec

TYPE_TOKEN = "endpoints:batch_endpoint:BatchEndpoint"
_SUFFIX = {
    "ServiceAccount": "sa",
    "Role": "role",
    "RoleBinding": "rolebinding",
    "Deployment": "api",
    "Service": "svc",
    "PodDisruptionBudget": "pdb",
    "NetworkPolicy": "ingress",
}


@dataclass
class BatchEndpointArgs:
    """Inputs of a :class:`BatchEndpoint`.

    Attributes:
        endpoint: The validated batch endpoint spec.
        deployment_names: Its deployments (the job API reads their Job templates).
        settings: Stack settings (namespace, domain, gateway, OIDC).
        image: The job API image (``serving/Dockerfile.batch --target job-api``: the serving image plus the
            ``kubernetes`` client); a string or a Pulumi output (a built image's digest).
        options: Volume claim and queue options (default :class:`BatchOptions`).
        create_volume_claim: Create the ReadWriteMany claim ``options.volume_claim`` (default True; False when
            the stack provides it).
        replicas: Job API replicas (default 2; the Kubernetes launcher keeps no state in the process).
        templates_hash: Hash of the deployments' Job templates (``templates_hash``), an annotation on the job API's
            pods so a changed template rolls them (default none).
        private: Route through the stack's private gateway (default False).
        rotation: Key rotation markers; changing one regenerates only that key (default generation "0").
    """

    endpoint: BatchEndpointSpec
    deployment_names: list[str]
    settings: ClusterSettings
    image: Any
    options: BatchOptions = field(default_factory=BatchOptions)
    create_volume_claim: bool = True
    replicas: int = 2
    templates_hash: Any = None
    private: bool = False
    rotation: KeyRotation = field(default_factory=KeyRotation)


class BatchEndpoint(pulumi.ComponentResource):
    """An Azure-ML-style batch endpoint on Kubernetes.

    Outputs:
        jobs_uri: ``https://<endpoint>.<domain>/jobs`` (``POST`` a job, ``GET`` its status).
        primary_key, secondary_key: Secret outputs.
        secret_name: Name of the keys Secret.
        service_name: Name of the job API Service (in-cluster clients).
        queue_name: Kueue LocalQueue of the endpoint's jobs.
    """

    jobs_uri: pulumi.Output[str]
    primary_key: pulumi.Output[str]
    secondary_key: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    queue_name: pulumi.Output[str]

    def __init__(self, name: str, args: BatchEndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        ep, settings = args.endpoint, args.settings
        # Build every dict first: a spec problem fails before any resource is registered.
        api_objects = build_job_api_objects(
            ep, args.deployment_names, settings, args.image, args.options, args.replicas, args.templates_hash
        )
        api_objects += [build_job_api_pdb(ep, settings), build_job_api_ingress_policy(ep, settings, args.private)]
        egress = [build_job_api_egress_policy(ep, settings), build_runner_egress_policy(ep, settings)]
        route = build_job_api_route(ep, settings, args.private)
        claim = build_volume_claim(ep, settings, args.options) if args.create_volume_claim else None
        # The endpoint's own LocalQueue unless the stack names a shared one.
        local_queue = (
            build_endpoint_local_queue(ep, settings, args.options) if args.options.queue_name is None else None
        )
        child = pulumi.ResourceOptions(parent=self)

        keys = create_endpoint_keys(self, name, args.rotation, lambda p, s, k: build_keys_secret(ep, settings, p, s, k))
        self.primary_key, self.secondary_key, self.secret = keys.primary, keys.secondary, keys.secret
        self.resources: dict[str, pulumi.CustomResource] = {}
        for obj in api_objects:
            deps = [self.secret] if obj["kind"] == "Deployment" else []
            self.resources[obj["kind"]] = create_object(
                f"{name}-{_SUFFIX[obj['kind']]}", obj, pulumi.ResourceOptions(parent=self, depends_on=deps)
            )
        self.egress_policies = [
            create_object(f"{name}-{suffix}", obj, child)
            for suffix, obj in zip(("api-egress", "runner-egress"), egress, strict=True)
        ]
        self.route = create_object(f"{name}-route", route, child)
        if claim is not None:
            self.volume_claim = create_object(f"{name}-data", claim, child)
        if local_queue is not None:
            self.local_queue = create_object(f"{name}-queue", local_queue, child)
        self.jobs_uri = pulumi.Output.from_input(jobs_uri(ep, settings))
        self.secret_name = pulumi.Output.from_input(keys_secret_name(ep.name))
        self.service_name = pulumi.Output.from_input(job_api_name(ep.name))
        self.queue_name = pulumi.Output.from_input(queue_name(ep.name, args.options))
        self.register_outputs(
            {
                "jobs_uri": self.jobs_uri,
                "primary_key": self.primary_key,
                "secondary_key": self.secondary_key,
                "secret_name": self.secret_name,
                "service_name": self.service_name,
                "queue_name": self.queue_name,
            }
        )
