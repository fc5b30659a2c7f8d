"""``BatchPlatform``: what every batch endpoint of a stack shares, created once per stack (never per endpoint).

* the Kueue ``ClusterQueue`` of the stack (one ResourceFlavor per compute pool, from ``ComputePool``, with the
  pool's nominal quota): batch Jobs wait there while their pool is full and nothing runs while no job does;
* the batch ``PriorityClasses`` (``ml-endpoints-batch``, ``ml-endpoints-batch-low``; cluster-scoped, so a cluster
  running several stacks lets one of them own these: ``createPriorityClasses``);
* the shared ReadWriteMany volume claim the runners write outputs to and the job APIs read progress from;
* the job API image and the batch runner base image: pinned, or built with pulumi-docker from
  ``serving/Dockerfile.batch`` (targets ``job-api`` and ``runner``, the recipe of
  ``endpoints.images.batch_image_build``) on the serving image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.builders.batch_options import BatchOptions, build_batch_volume_claim
from components.builders.batch_queues import batch_cluster_queue_name, build_batch_platform_objects
from components.image_build import built_image
from components.kubernetes_objects import create_object
from endpoints.images import ImageBuild

TYPE_TOKEN = "endpoints:batch_platform:BatchPlatform"
_SUFFIX = {"ClusterQueue": "queue", "PersistentVolumeClaim": "data"}


@dataclass
class BatchPlatformArgs:
    """Inputs of a :class:`BatchPlatform`.

    Attributes:
        namespace: The stack's namespace (its ClusterQueue admits only this namespace and is named after it).
        quotas: Pool -> nominal quota (``{"cpu": ..., "memory": ..., "nvidia.com/gpu": ...}``).
        options: Volume claim options (default :class:`BatchOptions`).
        priority_classes: Create the batch PriorityClasses (default True).
        job_api_image: Pinned job API image; None to build ``job_api_build``.
        job_api_build: Build of the job API image.
        runner_image: Pinned runner image; None to build ``runner_build`` (or when no deployment builds on it).
        runner_build: Build of the runner image.
    """

    namespace: str
    quotas: dict[str, dict[str, str]]
    options: BatchOptions = field(default_factory=BatchOptions)
    priority_classes: bool = True
    job_api_image: str | None = None
    job_api_build: ImageBuild | None = None
    runner_image: str | None = None
    runner_build: ImageBuild | None = None


class BatchPlatform(pulumi.ComponentResource):
    """The stack-wide batch pieces.

    Outputs:
        cluster_queue: Name of the stack's ClusterQueue.
        job_api_image: The job API image (a registry digest when built and pushed).
        runner_image: The batch runner image ('' when no batch deployment of the stack builds on it).
    """

    cluster_queue: pulumi.Output[str]
    job_api_image: pulumi.Output[str]
    runner_image: pulumi.Output[str]

    def __init__(self, name: str, args: BatchPlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        if args.job_api_image is None and args.job_api_build is None:
            raise ValueError(f"BatchPlatform {name}: give a pinned job API image or its build")
        objs = build_batch_platform_objects(args.namespace, args.quotas, args.priority_classes)
        objs.append(build_batch_volume_claim(args.namespace, args.options))
        child = pulumi.ResourceOptions(parent=self)
        for obj in objs:
            suffix = _SUFFIX.get(obj["kind"]) or obj["metadata"]["name"]
            create_object(f"{name}-{suffix}", obj, child)
        self.job_api_image = self._image(name, "job-api", args.job_api_image, args.job_api_build)
        self.runner_image = self._image(name, "runner", args.runner_image, args.runner_build)
        self.cluster_queue = pulumi.Output.from_input(batch_cluster_queue_name(args.namespace))
        self.register_outputs(
            {
                "cluster_queue": self.cluster_queue,
                "job_api_image": self.job_api_image,
                "runner_image": self.runner_image,
            }
        )

    def _image(self, name: str, what: str, image: str | None, build: ImageBuild | None) -> pulumi.Output[str]:
        if image is not None:
            return pulumi.Output.from_input(image)
        if build is None:
            return pulumi.Output.from_input("")
        return built_image(f"{name}-{what}-image", build, pulumi.ResourceOptions(parent=self))
