"""The one way components build an image with pulumi-docker (online deployments, batch deployments, batch images)."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from endpoints.images import ImageBuild


def built_image(resource_name: str, build: ImageBuild, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """Build (and push) ``build`` as the resource ``resource_name``; the reference pods should run.

    Args:
        resource_name: Pulumi resource name of the ``docker.Image``.
        build: The recipe (context, Dockerfile, build args, optional target stage, repository).
        opts: Resource options (the calling component as parent).

    Returns:
        The pushed image's registry digest, or its name when nothing was pushed: pods run the digest, so a rebuilt
        image rolls them and an unchanged one does not.
    """
    args = dict(build.args)
    if build.base is not None:
        # The serving layer on the user's environment.image first; this build then starts FROM it.
        args["BASE_IMAGE"] = built_image(f"{resource_name}-base", build.base, opts)
    built = docker.Image(
        resource_name,
        image_name=f"{build.repository}:pulumi",
        build=docker.DockerBuildArgs(
            context=str(build.context),
            dockerfile=str(build.dockerfile),
            args=args,
            target=build.target,
            platform="linux/amd64",
        ),
        # A registry-less repository is a local image (kind/minikube load it); nothing to push.
        skip_push="/" not in build.repository,
        opts=opts,
    )
    out: pulumi.Output[str] = pulumi.Output.all(built.repo_digest, built.image_name).apply(lambda t: t[0] or t[1])
    return out
