"""The batch job API: a small Starlette service in front of a launcher.

Routes (every one behind the production layer's auth, ``serving.frontend``; ``/`` and ``/ready`` are not):

* ``POST /jobs`` ``{"input": ..., "output"?: ..., "deployment"?: ..., "settings"?: {...}, "job_id"?: ...}``
  -> 202 with the job (``Location: /jobs/<id>``); the endpoint's default deployment when none is named.
* ``GET /jobs/{id}`` -> the job: status (Queued, Running, Completed, Failed, Canceled), progress, counts.
* ``GET /jobs`` -> ``{"jobs": [...]}``, newest first.
* ``POST /jobs/{id}/cancel`` -> 202 with the job.
* ``GET /jobs/{id}/outputs[/{name}]``, ``GET /jobs/{id}/logs``: the job's files (:mod:`serving.batch.job_files`).
* ``POST /jobs/{id}/resume`` -> 202 with the job: a Failed or Canceled job's runners start again and skip what
  their journal holds (local launcher; 409 otherwise). Re-posting the same submission (same ``job_id``) does the
  same; reading a job never restarts it.

Errors are ``{"error": "<message>"}``: 400 bad request body or settings, 404 unknown job or deployment,
409 job id taken or job already finished.

Run: ``python -m endpoints.local.batch_api --project DIR --state-dir D`` (local launcher, which reads specs) or
``python -m serving.batch.api --launcher kubernetes --templates DIR --endpoint-name E --namespace NS``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contract.batch import RunnerSettingsError, apply_overrides
from contract.batch_settings import parse_settings
from serving.batch import job_files
from serving.batch.launchers import JobConflictError, JobNotFoundError, JobRequest, Launcher

log = logging.getLogger("serving.batch.api")

JOB_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$"


class JobSubmission(BaseModel):
    """Body of ``POST /jobs``."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1, description="A file, folder or glob; a local path or an fsspec URI.")
    output: str | None = Field(default=None, description="Output folder; default <output root>/<job id>.")
    deployment: str | None = Field(default=None, description="Deployment; default the endpoint's default.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Per-job overrides (contract.batch).")
    job_id: str | None = Field(default=None, pattern=JOB_ID_PATTERN, description="Job id; default batchjob-<hex>.")


class BadRequestError(ValueError):
    """A request the API rejects with 400."""


class JobApi:
    """Maps submissions onto runner settings and hands them to the launcher."""

    def __init__(
        self,
        launcher: Launcher,
        endpoint: str,
        deployments: dict[str, dict[str, Any]],
        default_deployment: str | None,
        output_root: str,
        resolve_paths: bool = False,
        confine_outputs: bool = True,
    ) -> None:
        """Configure the API.

        Args:
            launcher: Where jobs run.
            endpoint: The batch endpoint's name.
            deployments: Deployment name -> its runner settings without input, output and job id (see
                :func:`endpoints.batchmap.deployment_settings`; local runs add ``entry_script``/``model_dir``).
            default_deployment: Used when a job names none; with a single deployment, that one.
            output_root: Folder under which a job without ``output`` writes (``<root>/<job id>``).
            resolve_paths: Make relative local ``input``/``output`` absolute against this process's working folder
                (local launcher: runners start in their job folder); default False.
            confine_outputs: Refuse an ``output`` outside ``output_root`` (default True): on a shared volume a
                caller of one endpoint must not write into another endpoint's outputs. Only the CLI's in-process
                local mode (one user's own machine) turns it off.
        """
        self.launcher = launcher
        self.endpoint = endpoint
        self.deployments = deployments
        self.default = default_deployment or (next(iter(deployments)) if len(deployments) == 1 else None)
        self.output_root = output_root
        self.resolve_paths = resolve_paths
        self.confine_outputs = confine_outputs

    def request_for(self, body: JobSubmission) -> JobRequest:
        """Build the launcher request: deployment, id, output, settings (validated by the runner's model).

        Raises:
            BadRequestError: no deployment to pick, or bad settings (message names the key and value).
            JobNotFoundError: the named deployment does not exist.
        """
        name = body.deployment or self.default
        if name is None:
            raise BadRequestError(
                f"deployment: none given and endpoint {self.endpoint!r} has no default deployment "
                f"(deployments: {', '.join(sorted(self.deployments)) or 'none'})"
            )
        if name not in self.deployments:
            raise JobNotFoundError(
                f"deployment: got {name!r}; endpoint {self.endpoint!r} has "
                f"{', '.join(sorted(self.deployments)) or 'no deployments'}"
            )
        job_id = body.job_id or f"batchjob-{uuid.uuid4().hex[:12]}"
        output = str(Path(self.output_root) / job_id) if body.output is None else self._output(body.output)
        input_uri = body.input
        if self.resolve_paths:
            output = str(Path(output).resolve())
            if "://" not in input_uri:
                input_uri = str(Path(input_uri).absolute())
        try:
            data = apply_overrides(self.deployments[name], body.settings, "settings")
            data.update({"job_id": job_id, "input": input_uri, "output_dir": output})
            settings = parse_settings(data, "settings")
        except RunnerSettingsError as e:
            raise BadRequestError(str(e)) from e
        return JobRequest(
            id=job_id,
            endpoint=self.endpoint,
            deployment=name,
            input=input_uri,
            output=output,
            settings=settings.model_dump(),
        )

    def _output(self, output: str) -> str:
        """The job's output folder: with ``confine_outputs``, inside ``output_root`` (relative paths are taken
        relative to it; ``..`` and symbolic links leading out are refused).

        Raises:
            BadRequestError: the folder is outside this endpoint's output root (the message names both).
        """
        if not self.confine_outputs:
            return output
        if "://" in output:
            raise BadRequestError(
                f"output: got {output!r}; outputs are folders on the batch volume under {self.output_root}"
            )
        root = Path(os.path.realpath(self.output_root))
        path = Path(os.path.realpath(root / output))  # an absolute output replaces root; links are followed
        if path == root or root not in path.parents:
            raise BadRequestError(
                f"output: got {output!r}; outputs of endpoint {self.endpoint!r} must be folders under "
                f"{self.output_root} (e.g. {self.output_root}/nightly-2024-06-01)"
            )
        return str(path)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(api: JobApi, reconcile_interval: float = 1.0) -> Starlette:
    """The Starlette app of the job API (wrap it with ``serving.frontend.build_frontend`` for auth).

    Args:
        api: The configured API.
        reconcile_interval: Seconds between background ``launcher.reconcile()`` calls, for launchers that have
            one (the local launcher starts queued jobs there); default 1.
    """

    async def submit(request: Request) -> Response:
        try:
            raw = json.loads(await request.body())
            body = JobSubmission.model_validate(raw)
        except json.JSONDecodeError as e:
            return _error(400, f"request body: not valid JSON: {e.msg} at position {e.pos}")
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, f"request body: {loc}: got {first.get('input')!r}; {first['msg']}")
        try:
            job_request = api.request_for(body)
            info = await asyncio.to_thread(api.launcher.submit, job_request)
        except BadRequestError as e:
            return _error(400, str(e))
        except JobNotFoundError as e:
            return _error(404, str(e))
        except JobConflictError as e:
            return _error(409, str(e))
        log.info("job %s submitted to deployment %s: input %s", info.id, info.deployment, info.input)
        return JSONResponse(info.model_dump(), status_code=202, headers={"location": f"/jobs/{info.id}"})

    async def get_job(request: Request) -> Response:
        try:
            info = await asyncio.to_thread(api.launcher.get, request.path_params["job_id"])
        except JobNotFoundError as e:
            return _error(404, str(e))
        return JSONResponse(info.model_dump())

    async def list_jobs(request: Request) -> Response:
        infos = await asyncio.to_thread(api.launcher.list)
        return JSONResponse({"jobs": [i.model_dump() for i in infos]})

    async def cancel(request: Request) -> Response:
        try:
            info = await asyncio.to_thread(api.launcher.cancel, request.path_params["job_id"])
        except JobNotFoundError as e:
            return _error(404, str(e))
        except JobConflictError as e:
            return _error(409, str(e))
        log.info("job %s canceled", info.id)
        return JSONResponse(info.model_dump(), status_code=202)

    async def resume(request: Request) -> Response:
        resume_job: Callable[[str], Any] | None = getattr(api.launcher, "resume", None)
        if resume_job is None:
            return _error(409, "this job API's launcher resumes jobs by itself (Kubernetes retries failed pods)")
        try:
            info = await asyncio.to_thread(resume_job, request.path_params["job_id"])
        except JobNotFoundError as e:
            return _error(404, str(e))
        except JobConflictError as e:
            return _error(409, str(e))
        log.info("job %s resumed", info.id)
        return JSONResponse(info.model_dump(), status_code=202)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    reconcile: Callable[[], None] | None = getattr(api.launcher, "reconcile", None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                try:
                    await asyncio.to_thread(reconcile)  # type: ignore[arg-type]
                except Exception:
                    log.exception("reconcile failed")
                await asyncio.sleep(reconcile_interval)

        task = asyncio.create_task(loop()) if reconcile is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return Starlette(
        routes=[
            Route("/", live, methods=["GET"]),
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs", list_jobs, methods=["GET"]),
            Route("/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
            *job_files.routes(api.launcher),
            Route("/jobs/{job_id}/resume", resume, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def kubernetes_api(
    templates_dir: str,
    endpoint: str,
    default_deployment: str | None,
    namespace: str,
    output_root: str,
    owner_deployment: str | None = None,
) -> JobApi:
    """A job API that creates Indexed Jobs from the Job templates in ``templates_dir`` (``<deployment>.json``),
    owned by the Deployment ``owner_deployment`` when given (see :class:`KubernetesLauncher`)."""
    from serving.batch.launchers.kubernetes import KubernetesLauncher, load_templates, template_settings

    templates = load_templates(templates_dir)
    launcher = KubernetesLauncher(namespace, templates, owner_deployment=owner_deployment)
    deployments = {name: template_settings(t) for name, t in templates.items()}
    return JobApi(launcher, endpoint, deployments, default_deployment, output_root)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.batch.api", description="Batch job API.")
    p.add_argument("--launcher", choices=["local", "kubernetes"], default="local")
    p.add_argument("--project", help="local: the batch endpoint folder (endpoint.yml + deployments/)")
    p.add_argument("--state-dir", default=".endpoints/batch", help="local: job state and outputs")
    p.add_argument("--max-running", type=int, default=2, help="local: jobs running at once (default 2)")
    p.add_argument("--templates", help="kubernetes: folder of <deployment>.json Job templates")
    p.add_argument("--endpoint-name", help="kubernetes: the batch endpoint's name")
    p.add_argument("--default-deployment", help="kubernetes: deployment of jobs that name none")
    p.add_argument("--namespace", default="ml-endpoints", help="kubernetes: namespace of the Jobs")
    p.add_argument(
        "--owner-deployment",
        help="kubernetes: the job API's own Deployment, made the owner of the Jobs (they go when it goes)",
    )
    p.add_argument(
        "--output-root",
        default="/mnt/batch/outputs",
        help="kubernetes: this endpoint's output root inside the pods (jobs may write only under it)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    return p


def main(argv: list[str] | None = None, local_api: Callable[[str, str, int], JobApi] | None = None) -> int:
    """Command-line entry point: serve the job API with uvicorn, auth from ``ENDPOINTS_*`` env vars.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).
        local_api: Builds the job API of ``--launcher local`` from an endpoint project folder; it reads specs, so
            it lives with them (``endpoints.local.batch_api``, whose ``python -m`` passes it). Default none: the
            serving image runs ``--launcher kubernetes`` only.
    """
    import uvicorn

    from serving.frontend import FrontendSettings, build_frontend

    args = _parser().parse_args(argv)
    from serving import logformat

    logformat.configure(logging.INFO)
    if args.launcher == "local":
        if local_api is None:
            _parser().error("--launcher local reads an endpoint project: run python -m endpoints.local.batch_api")
        if not args.project:
            _parser().error("--project is required with --launcher local")
        api = local_api(args.project, args.state_dir, args.max_running)
    else:
        if not (args.templates and args.endpoint_name):
            _parser().error("--templates and --endpoint-name are required with --launcher kubernetes")
        api = kubernetes_api(
            args.templates,
            args.endpoint_name,
            args.default_deployment,
            args.namespace,
            args.output_root,
            args.owner_deployment,
        )
    frontend = build_frontend(build_app(api), FrontendSettings.from_env(), lambda: True)  # type: ignore[arg-type]
    # The frontend writes the one access line per request; uvicorn's own lines go through the JSON root handler.
    uvicorn.run(
        frontend,
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
