"""``BatchDeployment``: the runner image (given, or built with pulumi-docker) and the deployment's Indexed Job
template, stored in a ConfigMap that the batch endpoint's job API instantiates once per job.

Nothing runs while no job does: the template is data, not a Job. Queueing (Kueue ``LocalQueue``/``ClusterQueue``)
and the batch PriorityClasses are cluster-level objects created once (``ComputePool`` / the stack), see
``components.builders.batch_queues.build_batch_priority_classes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.builders.batch_job import (
    build_job_template,
    build_template_config_map,
    job_template_name,
    template_config_map_name,
)
from components.builders.batch_options import BatchOptions
from components.builders.batch_queues import priority_of, queue_name
from components.builders.common import ClusterSettings
from components.image_build import built_image
from components.kubernetes_objects import create_object
from endpoints.catalog import InstanceType
from endpoints.images import ImageBuild
from endpoints.specs import BatchDeployment as BatchDeploymentSpec
from endpoints.specs import BatchEndpoint as BatchEndpointSpec

TYPE_TOKEN = "endpoints:batch_deployment:BatchDeployment"


@dataclass
class BatchDeploymentArgs:
    """Inputs of a :class:`BatchDeployment`.

    Attributes:
        endpoint: The batch endpoint spec.
        deployment: The validated batch deployment spec.
        instance: Its instance type (catalog entry).
        settings: Stack settings.
        image: A pinned runner image; ``None`` to build one from ``build``.
        build: The image recipe when ``image`` is None.
        options: Queue, volume and deadline options (default :class:`BatchOptions`).
    """

    endpoint: BatchEndpointSpec
    deployment: BatchDeploymentSpec
    instance: InstanceType
    settings: ClusterSettings
    image: str | None = None
    build: ImageBuild | None = None
    options: BatchOptions = field(default_factory=BatchOptions)


class BatchDeployment(pulumi.ComponentResource):
    """One deployment of a batch endpoint.

    Outputs:
        image: The runner image (a registry digest when built and pushed).
        template_name: Name of the Job template (each job's Job is named after its job id).
        config_map_name: ConfigMap holding ``<deployment>.json``.
        config_map_data: That ConfigMap's ``data`` (the rendered template).
        queue_name: Kueue LocalQueue the jobs are submitted to.
        priority: ``normal`` or ``low``.
    """

    image: pulumi.Output[str]
    template_name: pulumi.Output[str]
    config_map_name: pulumi.Output[str]
    config_map_data: pulumi.Output[dict[str, str]]
    queue_name: pulumi.Output[str]
    priority: pulumi.Output[str]

    def __init__(self, name: str, args: BatchDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        if args.image is None and args.build is None:
            raise ValueError(f"BatchDeployment {name}: give a pinned image or an image build")
        priority = priority_of(args.deployment)  # spec problems fail before any resource is registered
        child = pulumi.ResourceOptions(parent=self)
        image: Any
        if args.image is not None:
            image = args.image
        else:
            build = args.build
            assert build is not None
            image = built_image(f"{name}-image", build, child)

        def config_map(img: str) -> dict[str, Any]:
            template = build_job_template(
                args.endpoint, args.deployment, args.instance, args.settings, img, args.options
            )
            return build_template_config_map(args.endpoint, args.deployment, template, args.settings)

        # Render once with a placeholder first: a spec problem fails here, before any resource exists.
        config_map("<image>")
        if isinstance(image, str):
            obj = config_map(image)
            data: Any = obj["data"]
        else:
            obj = config_map("<image>")
            data = pulumi.Output.from_input(image).apply(lambda img: config_map(img)["data"])
        self.config_map = create_object(f"{name}-template", {**obj, "data": data}, child)
        # The job API's pods carry a hash of this (``templates_hash``): a new template rolls them.
        self.config_map_data = pulumi.Output.from_input(data)
        self.image = pulumi.Output.from_input(image)
        self.template_name = pulumi.Output.from_input(job_template_name(args.endpoint.name, args.deployment.name))
        self.config_map_name = pulumi.Output.from_input(
            template_config_map_name(args.endpoint.name, args.deployment.name)
        )
        self.queue_name = pulumi.Output.from_input(queue_name(args.endpoint.name, args.options))
        self.priority = pulumi.Output.from_input(priority)
        self.register_outputs(
            {
                "image": self.image,
                "template_name": self.template_name,
                "config_map_name": self.config_map_name,
                "config_map_data": self.config_map_data,
                "queue_name": self.queue_name,
                "priority": self.priority,
            }
        )
