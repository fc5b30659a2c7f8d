"""``OnlineDeployment``: image (given or built with pulumi-docker), Deployment, Service, PDB, HPA or KEDA
ScaledObject, egress NetworkPolicy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.builders.common import ClusterSettings
from components.builders.online import build_deployment_objects, deployment_object_name
from components.image_build import built_image
from components.kubernetes_objects import create_object
from endpoints.catalog import InstanceType
from endpoints.images import ImageBuild
from endpoints.specs import OnlineDeployment as OnlineDeploymentSpec
from endpoints.specs import OnlineEndpoint as OnlineEndpointSpec

TYPE_TOKEN = "endpoints:online_deployment:OnlineDeployment"
# Pulumi resource name suffix per kind (names derive from the component's, so two deployments never collide).
_SUFFIX = {
    "Deployment": "deploy",
    "Service": "svc",
    "PodDisruptionBudget": "pdb",
    "HorizontalPodAutoscaler": "hpa",
    "ScaledObject": "scaledobject",
    "NetworkPolicy": "egress",
}


@dataclass
class OnlineDeploymentArgs:
    """Inputs of an :class:`OnlineDeployment`.

    Attributes:
        endpoint: The endpoint spec the deployment belongs to.
        deployment: The validated deployment spec (stack overrides applied).
        instance: Its instance type from the catalog.
        settings: Stack settings.
        image: A pinned image reference; ``None`` to build one from ``build``.
        build: The image recipe (:func:`components.builders.image.image_build_args`) when ``image`` is None.
        keys_secret: The endpoint's keys Secret resource (the pods mount it; created first).
    """

    endpoint: OnlineEndpointSpec
    deployment: OnlineDeploymentSpec
    instance: InstanceType
    settings: ClusterSettings
    image: str | None = None
    build: ImageBuild | None = None
    keys_secret: pulumi.Resource | None = None


class OnlineDeployment(pulumi.ComponentResource):
    """One deployment of an online endpoint.

    Outputs:
        image: The image reference the pods run (a registry digest when built and pushed).
        deployment_name: Name of the Kubernetes Deployment (and of its Service, PDB, autoscaler).
        service_name: Name of the Service the endpoint's HTTPRoute sends traffic to.
    """

    image: pulumi.Output[str]
    deployment_name: pulumi.Output[str]
    service_name: pulumi.Output[str]

    def __init__(self, name: str, args: OnlineDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        if args.image is None and args.build is None:
            raise ValueError(f"OnlineDeployment {name}: give a pinned image or an image build")
        # Build once before registering anything: a spec problem fails before any resource (the image) exists.
        build_deployment_objects(args.endpoint, args.deployment, args.instance, args.settings, "validate:only")
        child = pulumi.ResourceOptions(parent=self)
        image: Any
        if args.image is not None:
            image = args.image
        else:
            build = args.build
            assert build is not None
            image = built_image(f"{name}-image", build, child)
        objs = build_deployment_objects(args.endpoint, args.deployment, args.instance, args.settings, image)
        deps = [args.keys_secret] if args.keys_secret is not None else []
        self.resources: dict[str, pulumi.CustomResource] = {}
        for obj in objs:
            suffix = _SUFFIX[obj["kind"]]
            opts_k = pulumi.ResourceOptions(parent=self, depends_on=deps if obj["kind"] == "Deployment" else [])
            self.resources[obj["kind"]] = create_object(f"{name}-{suffix}", obj, opts_k)
        object_name = deployment_object_name(args.endpoint.name, args.deployment.name)
        self.image = pulumi.Output.from_input(image)
        self.deployment_name = pulumi.Output.from_input(object_name)
        self.service_name = pulumi.Output.from_input(object_name)
        self.register_outputs(
            {"image": self.image, "deployment_name": self.deployment_name, "service_name": self.service_name}
        )
