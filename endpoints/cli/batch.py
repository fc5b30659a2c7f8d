"""``endpoints batch``: invoke batch endpoints and follow their jobs, locally or through a job API URL.

``ENDPOINT`` is either the URL of a batch endpoint's job API (``https://...``: the cluster, or a local
``python -m serving.batch.api``) or a batch endpoint folder (``endpoint.yml`` + ``deployments/``): then jobs
run on this machine as runner processes, their state under ``--state-dir`` (default ``.endpoints/batch``), and
``status``/``list``/``cancel`` read that folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

TERMINAL = ("Completed", "Failed", "Canceled")
DEFAULT_STATE_DIR = ".endpoints/batch"

batch_app = typer.Typer(
    name="batch",
    help="Invoke batch endpoints and follow their jobs (local folder or job API URL).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


class Backend(Protocol):
    """The four job operations, over HTTP or on this machine."""

    def submit(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def get(self, job_id: str) -> dict[str, Any]: ...
    def list(self) -> list[dict[str, Any]]: ...
    def cancel(self, job_id: str) -> dict[str, Any]: ...
    def close(self) -> None: ...


class HttpBackend:
    """Talks to a job API (``serving.batch.api``) with a bearer key or token."""

    def __init__(self, url: str, key: str | None) -> None:
        """Remember the base URL and credential."""
        import httpx

        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            response = self.client.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise CliError(f"{self.client.base_url}{path}: {type(e).__name__}: {e}") from e
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if response.status_code >= 400:
            raise CliError(f"{method} {path}: HTTP {response.status_code}: {data.get('error', data)}")
        return data

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /jobs."""
        return self._call("POST", "/jobs", json=body)  # type: ignore[no-any-return]

    def get(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}."""
        return self._call("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    def list(self) -> list[dict[str, Any]]:
        """GET /jobs."""
        return self._call("GET", "/jobs")["jobs"]  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """POST /jobs/{id}/cancel."""
        return self._call("POST", f"/jobs/{job_id}/cancel")  # type: ignore[no-any-return]


class LocalBackend:
    """Runs jobs of an endpoint folder on this machine (the same code the job API runs)."""

    def __init__(self, folder: Path, state_dir: Path) -> None:
        """Load and validate the endpoint folder."""
        from endpoints.errors import SpecError
        from serving.batch.api import local_api

        try:
            self.api = local_api(str(folder), str(state_dir / folder.resolve().name))
        except (SpecError, ValueError) as e:
            raise CliError(str(e)) from e
        self.launcher = self.api.launcher

    def close(self) -> None:
        """Nothing to close: runners live on by themselves."""

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate like the job API, then start (or queue) the runners."""
        from pydantic import ValidationError

        from serving.batch.api import BadRequestError, JobSubmission
        from serving.batch.launchers import JobConflictError, JobNotFoundError

        try:
            request = self.api.request_for(JobSubmission.model_validate(body))
            return self.launcher.submit(request).model_dump()
        except ValidationError as e:
            first = e.errors()[0]
            raise CliError(f"{'.'.join(map(str, first['loc']))}: got {first.get('input')!r}; {first['msg']}") from e
        except (BadRequestError, JobNotFoundError, JobConflictError) as e:
            raise CliError(str(e)) from e

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's state (starting queued jobs first, as the job API's background loop would)."""
        from serving.batch.launchers import JobNotFoundError

        self.launcher.reconcile()  # type: ignore[attr-defined]
        try:
            return self.launcher.get(job_id).model_dump()
        except JobNotFoundError as e:
            raise CliError(str(e)) from e

    def list(self) -> list[dict[str, Any]]:
        """Every job of this endpoint folder."""
        return [j.model_dump() for j in self.launcher.list()]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """SIGTERM the job's runners."""
        from serving.batch.launchers import JobConflictError, JobNotFoundError

        try:
            return self.launcher.cancel(job_id).model_dump()
        except (JobNotFoundError, JobConflictError) as e:
            raise CliError(str(e)) from e


class CliError(Exception):
    """A failure reported as one line and exit code 1."""


def backend_for(endpoint: str, key: str | None, state_dir: Path) -> Backend:
    """A URL gives an HTTP backend, a folder the local one.

    Raises:
        typer.BadParameter: neither a URL nor a batch endpoint folder.
    """
    if endpoint.startswith(("http://", "https://")):
        return HttpBackend(endpoint, key)
    folder = Path(endpoint)
    if not (folder / "endpoint.yml").is_file():
        raise typer.BadParameter(
            f"got {endpoint!r}; give a job API URL (http[s]://...) or a batch endpoint folder holding endpoint.yml",
            param_hint="ENDPOINT",
        )
    try:
        return LocalBackend(folder, state_dir)
    except CliError as e:
        raise typer.BadParameter(str(e), param_hint="ENDPOINT") from e


def parse_sets(values: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, booleans), else kept as text.

    Raises:
        typer.BadParameter: a pair has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"got {item!r}; write key=value, e.g. mini_batch_size=20", param_hint="--set")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _describe(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    if "total" in p:
        rate = p.get("rows_per_second", 0.0)
        eta = p.get("eta_seconds")
        where = f"{p.get('done', 0)}/{p['total']} mini-batches, {p.get('rows', 0)} rows, {rate:.1f} rows/s"
        where += f", ETA {eta:.0f}s" if eta is not None and job["status"] == "Running" else ""
    elif "instances" in p:
        where = f"{p.get('instances_done', 0)}/{p['instances']} instances"
    else:
        where = ""
    error = f" - {job['error']}" if job.get("error") else ""
    return f"{job['id']}  {job['status']:<9}  {job.get('deployment', '')}  {where}{error}"


def _fraction(job: dict[str, Any]) -> tuple[int, int]:
    p = job.get("progress") or {}
    if "total" in p:
        return int(p.get("done", 0)), int(p["total"]) or 1
    if "instances" in p:
        return int(p.get("instances_done", 0)), int(p["instances"]) or 1
    return 0, 1


def wait_for(backend: Backend, job_id: str, console: Console, show: bool, poll_s: float = 0.5) -> dict[str, Any]:
    """Poll until the job ends, with a progress bar when ``show`` (stderr)."""
    job = backend.get(job_id)
    if not show:
        while job["status"] not in TERMINAL:
            time.sleep(poll_s)
            job = backend.get(job_id)
        return job
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        done, total = _fraction(job)
        task = bar.add_task(f"{job_id} {job['status']}", total=total, completed=done, rate="")
        while True:
            done, total = _fraction(job)
            rate = (job.get("progress") or {}).get("rows_per_second")
            bar.update(task, completed=done, total=total, description=f"{job_id} {job['status']}",
                       rate=f"{rate:.1f} rows/s" if rate else "")  # fmt: skip
            if job["status"] in TERMINAL:
                break
            time.sleep(poll_s)
            job = backend.get(job_id)
    return job


EndpointArg = Annotated[str, typer.Argument(help="Job API URL, or a batch endpoint folder (local mode).")]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", envvar="ENDPOINTS_KEY", help="Endpoint key or token (URL mode).", show_default=False),
]
StateOpt = Annotated[Path, typer.Option("--state-dir", help="Local mode: where jobs keep their state and output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(e: CliError) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@batch_app.command()
def invoke(
    endpoint: EndpointArg,
    input_: Annotated[str, typer.Option("--input", help="File, folder, glob or URI (fsspec) to score.")],
    deployment: Annotated[str | None, typer.Option(help="Deployment; default the endpoint's default.")] = None,
    output: Annotated[str | None, typer.Option(help="Output folder; default one per job.")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Job id; default batchjob-<hex>.")] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Per-job setting key=value (e.g. mini_batch_size=20); repeatable.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end (progress bar).")] = False,
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """Start a batch job; with --wait, exit 0 only when it completes."""
    backend = backend_for(endpoint, key, state_dir)
    body: dict[str, Any] = {"input": input_, "settings": parse_sets(sets or [])}
    if input_ and "://" not in input_:
        body["input"] = str(Path(input_).resolve()) if not isinstance(backend, HttpBackend) else input_
    for name, value in (("deployment", deployment), ("output", output), ("job_id", job_id)):
        if value is not None:
            body[name] = value
    try:
        job = backend.submit(body)
        if wait:
            job = wait_for(backend, job["id"], Console(stderr=True), show=not as_json)
    except CliError as e:
        raise _fail(e) from e
    finally:
        backend.close()
    if as_json:
        typer.echo(json.dumps(job, indent=2))
    else:
        typer.echo(_describe(job))
        if wait and job.get("output"):
            typer.echo(f"output: {os.path.join(job['output'], job.get('output_file_name', ''))}")
    if wait and job["status"] != "Completed":
        raise typer.Exit(code=1)


@batch_app.command()
def status(
    endpoint: EndpointArg,
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end.")] = False,
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """Show a job's status, progress and counts."""
    backend = backend_for(endpoint, key, state_dir)
    try:
        job = wait_for(backend, job_id, Console(stderr=True), show=not as_json) if wait else backend.get(job_id)
    except CliError as e:
        raise _fail(e) from e
    finally:
        backend.close()
    typer.echo(json.dumps(job, indent=2) if as_json else _describe(job))


@batch_app.command("list")
def list_jobs(
    endpoint: EndpointArg,
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """List the endpoint's jobs, newest first."""
    backend = backend_for(endpoint, key, state_dir)
    try:
        jobs = backend.list()
    except CliError as e:
        raise _fail(e) from e
    finally:
        backend.close()
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
    else:
        for job in jobs:
            typer.echo(_describe(job))


@batch_app.command()
def cancel(
    endpoint: EndpointArg,
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """Cancel a queued or running job (finished mini-batches stay in the output)."""
    backend = backend_for(endpoint, key, state_dir)
    try:
        job = backend.cancel(job_id)
    except CliError as e:
        raise _fail(e) from e
    finally:
        backend.close()
    typer.echo(json.dumps(job, indent=2) if as_json else _describe(job))


def register(app: typer.Typer) -> None:
    """Add ``endpoints batch`` to the main command."""
    app.add_typer(batch_app, name="batch")
