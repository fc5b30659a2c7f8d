#!/usr/bin/env python3
"""Build this project's images with podman, from the recipes in ``endpoints.images``.

Usage (from the repository root, with the project's venv active)::

    scripts/images/build-base-image.sh                       # once: localhost/debian-python:bookworm
    python scripts/images/build.py serving                   # localhost/endpoints-serving:dev
    python scripts/images/build.py batch --target runner     # localhost/endpoints-batch-runner:dev
    python scripts/images/build.py batch --target job-api    # localhost/endpoints-job-api:dev
    python scripts/images/build.py deployment examples/car-classifier alice
                                                             # localhost/car-classifier-alice:dev

``--base-image`` defaults to the local debootstrap image when it exists (machines that cannot pull), else
to the official slim Python image. Builds run with ``--network host`` and the host's CA bundle mounted so
that pip reaches the package index from inside the build. Each command prints the image reference, the
build time and the size on its last line as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

from endpoints.images import (  # noqa: E402
    DEFAULT_BASE_IMAGE,
    LOCAL_BASE_IMAGE,
    ImageBuild,
    batch_image_build,
    deployment_image_build,
    serving_image_build,
)

PODMAN = [str(REPO_ROOT / "scripts" / "images" / "podman.sh")]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SERVING_TAG = "localhost/endpoints-serving:dev"
BATCH_TAGS = {"runner": "localhost/endpoints-batch-runner:dev", "job-api": "localhost/endpoints-job-api:dev"}


def image_exists(ref: str) -> bool:
    """Whether podman has the image ``ref`` locally."""
    return subprocess.run([*PODMAN, "image", "exists", ref], check=False).returncode == 0


def default_base_image() -> str:
    """The local debootstrap base image when present, else the official slim image."""
    return LOCAL_BASE_IMAGE if image_exists(LOCAL_BASE_IMAGE) else DEFAULT_BASE_IMAGE


def build_command(build: ImageBuild, tag: str) -> list[str]:
    """The full ``podman build`` command line for ``build``, tagged ``tag``."""
    network = ["--network", "host"]
    if Path(CA_BUNDLE).is_file():
        network += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    return [*PODMAN, "build", "--layers", *network, "-t", tag, *build.podman_args()]


def image_size(ref: str) -> int:
    """Size in bytes of a local image."""
    out = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", "{{.Size}}", ref], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


def run_build(build: ImageBuild, tag: str, quiet: bool = False) -> dict[str, object]:
    """Build ``build`` as ``tag``; return ``{"image", "seconds", "size_bytes"}``.

    Raises:
        subprocess.CalledProcessError: when podman fails (its output has gone to stderr).
    """
    start = time.monotonic()
    subprocess.run(build_command(build, tag), check=True, stdout=subprocess.DEVNULL if quiet else sys.stderr)
    return {"image": tag, "seconds": round(time.monotonic() - start, 1), "size_bytes": image_size(tag)}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="hide podman's build output")
    sub = parser.add_subparsers(dest="what", required=True)
    p_serving = sub.add_parser("serving", help="the serving base image")
    p_batch = sub.add_parser("batch", help="the batch runner or job API image")
    p_batch.add_argument("--target", choices=["runner", "job-api"], default="runner")
    p_serving.add_argument("--base-image", default=None, help="BASE_IMAGE (default: local debootstrap image, if any)")
    p_batch.add_argument("--serving-image", default=SERVING_TAG, help=f"image to build on (default {SERVING_TAG})")
    for p in (p_serving, p_batch):
        p.add_argument("--tag", default=None)
    p_dep = sub.add_parser("deployment", help="a deployment's image (code, environment, model)")
    p_dep.add_argument("endpoint_dir", type=Path)
    p_dep.add_argument("deployment")
    p_dep.add_argument("--endpoint-file", default="endpoint.yml")
    p_dep.add_argument("--serving-image", default=None, help="image to build on (default: serving or batch runner)")
    p_dep.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    try:
        result = _build(args)
    except subprocess.CalledProcessError as e:
        print(f"podman failed with exit status {e.returncode}: {' '.join(e.cmd)}", file=sys.stderr)
        return 1
    if result is None:
        return 0
    if isinstance(result, int):
        return result
    print(json.dumps(result))
    return 0


def _build(args: argparse.Namespace) -> dict[str, object] | int | None:
    if args.what == "serving":
        build = serving_image_build(args.base_image or default_base_image())
        result = run_build(build, args.tag or SERVING_TAG, args.quiet)
    elif args.what == "batch":
        build = batch_image_build(args.target, args.serving_image)
        result = run_build(build, args.tag or BATCH_TAGS[args.target], args.quiet)
    else:
        from endpoints.errors import SpecError
        from endpoints.project import load_endpoint_project

        try:
            project = load_endpoint_project(args.endpoint_dir, args.endpoint_file)
        except SpecError as e:
            print(e, file=sys.stderr)
            return 1
        if args.deployment not in project.deployments:
            known = ", ".join(sorted(project.deployments))
            print(f"{args.endpoint_dir}: no deployment {args.deployment!r} (deployments: {known})", file=sys.stderr)
            return 1
        spec = project.deployments[args.deployment]
        base = args.serving_image or (SERVING_TAG if project.kind == "online" else BATCH_TAGS["runner"])
        recipe = deployment_image_build(spec, project.deployment_file(args.deployment), base, project.root)
        if recipe is None:
            print(f"{args.deployment}: runs its own image; nothing to build", file=sys.stderr)
            return None
        tag = args.tag or f"localhost/{project.endpoint.name}-{args.deployment}:dev"
        result = run_build(recipe, tag, args.quiet)
    return result


if __name__ == "__main__":
    sys.exit(main())
