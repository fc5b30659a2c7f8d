"""The batch job API over an endpoint project folder on this machine (the local launcher).

``python -m endpoints.local.batch_api --project DIR --state-dir D`` serves it (the arguments of
``python -m serving.batch.api``); ``endpoints batch`` uses :func:`local_api` in process. It lives here, not in
``serving/``, because it reads the specs: the serving image runs the job API with the Kubernetes launcher only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from endpoints.batchmap import deployment_settings, local_paths
from endpoints.project import load_endpoint_project
from endpoints.specs import BatchDeployment, BatchEndpoint
from serving.batch.api import JobApi
from serving.batch.api import main as serve
from serving.batch.launchers.local import LocalLauncher


def local_api(project_dir: str, state_dir: str, max_running: int = 2) -> JobApi:
    """A job API over an endpoint project folder with the local launcher.

    Raises:
        SpecError: the project is invalid (from ``endpoints.project``).
        ValueError: the project is an online endpoint.
    """
    project = load_endpoint_project(project_dir)
    if not isinstance(project.endpoint, BatchEndpoint):
        raise ValueError(f"{project.endpoint_file}: endpoint {project.endpoint.name!r} is not a batch endpoint")
    deployments = {}
    for name, spec in project.deployments.items():
        assert isinstance(spec, BatchDeployment)
        file = project.deployment_file(name)
        models = Path(state_dir).resolve() / "models" / name  # AZUREML_MODEL_DIR, Azure's layout
        deployments[name] = {**deployment_settings(spec), **local_paths(spec, file.parent, models, str(file))}
    launcher = LocalLauncher(state_dir, max_running=max_running)
    return JobApi(
        launcher,
        project.endpoint.name,
        deployments,
        project.endpoint.defaults.deployment_name,
        str(Path(state_dir).resolve() / "outputs"),
        resolve_paths=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve the job API of ``--project`` with the local launcher (see ``python -m serving.batch.api --help``)."""
    return serve(argv, local_api=local_api)


if __name__ == "__main__":
    sys.exit(main())
