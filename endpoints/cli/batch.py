"""``endpoints batch``: invoke batch endpoints and follow their jobs, locally or through a job API URL.

``ENDPOINT`` is either the URL of a batch endpoint's job API (``https://...``: the cluster, or a local
``python -m serving.batch.api``) or a batch endpoint folder (``endpoint.yml`` + ``deployments/``): then jobs
run on this machine as runner processes, their state under ``--state-dir`` (default ``.endpoints/batch``), and
``status``/``list``/``cancel`` read that folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from endpoints.sdk.batch import DEFAULT_STATE_DIR, TERMINAL
from serving.batch.job_files import MAX_LOG_LINES

batch_app = typer.Typer(
    name="batch",
    help="Invoke batch endpoints and follow their jobs (local folder or job API URL).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def backend_for(endpoint: str, key: str | None, state_dir: Path) -> Any:
    """A :class:`~endpoints.sdk.BatchEndpointClient`: a URL (the exported ``jobsUri`` as it is, or the job API's
    base) talks HTTP, a folder runs jobs here.

    Raises:
        typer.BadParameter: neither a URL nor a valid batch endpoint folder.
    """
    from endpoints.sdk import BatchEndpointClient, EndpointError

    try:
        return BatchEndpointClient(endpoint, key=key, state_dir=state_dir)
    except EndpointError as e:
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
    items = (job.get("counts") or {}).get("items") or {}
    failed = f", {items['failed']} failed items" if items.get("failed") else ""
    error = f" - {job['error']}" if job.get("error") else ""
    return f"{job['id']}  {job['status']:<9}  {job.get('deployment', '')}  {where}{failed}{error}"


MAX_FAILURES_SHOWN = 10


def _failure_lines(job: dict[str, Any]) -> list[str]:
    """One line per failed mini-batch (the first few) with its reason."""
    failures = (job.get("counts") or {}).get("failures") or []
    lines = [
        f"  failed: mini-batch {f['mini_batch']}: {f['failed_items']} items after {f['attempts']} attempts: "
        f"{f['reason']}"
        for f in failures[:MAX_FAILURES_SHOWN]
    ]
    if len(failures) > MAX_FAILURES_SHOWN:
        lines.append(f"  ... {len(failures) - MAX_FAILURES_SHOWN} more failed mini-batches (--json lists them all)")
    return lines


def _succeeded(job: dict[str, Any]) -> bool:
    """Completed, and not a job whose every item failed (error_threshold -1 lets that complete: nothing was scored)."""
    items = (job.get("counts") or {}).get("items") or {}
    return job["status"] == "Completed" and not (items.get("failed") and not items.get("succeeded"))


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    """The job as JSON, or its one-line description and its failed mini-batches."""
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    typer.echo(_describe(job))
    for line in _failure_lines(job):
        typer.echo(line)


EndpointArg = Annotated[str, typer.Argument(help="Job API URL, or a batch endpoint folder (local mode).")]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", envvar="ENDPOINTS_KEY", help="Endpoint key or token (URL mode).", show_default=False),
]
StateOpt = Annotated[Path, typer.Option("--state-dir", help="Local mode: where jobs keep their state and output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(e: Exception, as_json: bool = False) -> typer.Exit:
    if as_json:
        typer.echo(json.dumps({"error": str(e)}))
    else:
        Console(stderr=True).print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True, markup=False)
    return typer.Exit(code=1)


@contextlib.contextmanager
def _job(endpoint: str, job_id: str, key: str | None, state_dir: Path, as_json: bool) -> Iterator[Any]:
    """One job of the endpoint (an SDK ``BatchJob``); an SDK error ends the command with its message."""
    from endpoints.sdk import EndpointError

    with backend_for(endpoint, key, state_dir) as client:
        try:
            yield client.job(job_id)
        except EndpointError as e:
            raise _fail(e, as_json) from e


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
    from endpoints.sdk import EndpointError

    settings = parse_sets(sets or [])
    with backend_for(endpoint, key, state_dir) as client:
        try:
            batch_job = client.invoke(input_, output, deployment=deployment, job_id=job_id, **settings)
            # This command runs the job: following it starts it when a runner slot frees up (folder mode).
            job = batch_job.wait(progress=not as_json) if wait else batch_job.info
        except EndpointError as e:
            raise _fail(e, as_json) from e
    if as_json:
        typer.echo(json.dumps(job, indent=2))
    else:
        typer.echo(_describe(job))
        if wait:
            for line in _failure_lines(job):
                typer.echo(line)
        if wait and job.get("output"):
            typer.echo(f"output: {os.path.join(job['output'], job.get('output_file_name', ''))}")
    if wait and not _succeeded(job):
        if job["status"] == "Completed":
            Console(stderr=True).print("[red]error:[/red] every item failed; nothing was scored", highlight=False)
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
    _one_job(endpoint, job_id, key, state_dir, as_json, wait, resume=False)


@batch_app.command()
def resume(
    endpoint: EndpointArg,
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end (progress bar).")] = False,
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """Start a Failed or Canceled job again: its runners skip every mini-batch the journal holds."""
    _one_job(endpoint, job_id, key, state_dir, as_json, wait, resume=True)


def _one_job(
    endpoint: str, job_id: str, key: str | None, state_dir: Path, as_json: bool, wait: bool, *, resume: bool
) -> None:
    """``status`` and ``resume``: (resume and) print one job, following it to its end with ``--wait``; exit 1 when
    a followed job did not succeed."""
    with _job(endpoint, job_id, key, state_dir, as_json) as batch_job:
        if resume:
            batch_job.resume()
        # Only resume starts a queued job when a runner slot frees up; reading (status) changes nothing.
        job = batch_job.wait(progress=not as_json, start_queued=resume) if wait else batch_job.info
    _print_job(job, as_json)
    if wait and not _succeeded(job):
        raise typer.Exit(code=1)


@batch_app.command("list")
def list_jobs(
    endpoint: EndpointArg,
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """List the endpoint's jobs, newest first."""
    from endpoints.sdk import EndpointError

    with backend_for(endpoint, key, state_dir) as client:
        try:
            jobs = [j.info for j in client.jobs()]
        except EndpointError as e:
            raise _fail(e, as_json) from e
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
    with _job(endpoint, job_id, key, state_dir, as_json) as batch_job:
        job = batch_job.cancel()
    typer.echo(json.dumps(job, indent=2) if as_json else _describe(job))


@batch_app.command()
def download(
    endpoint: EndpointArg,
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    dest: Annotated[Path, typer.Argument(help="Folder to copy the job's output files into (created).")],
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """Copy a job's output files (predictions and summary) into DEST; a running job gives what is written so far."""
    with _job(endpoint, job_id, key, state_dir, as_json) as batch_job:
        written = batch_job.download(dest)
    if as_json:
        typer.echo(json.dumps({"job": job_id, "files": [str(p) for p in written]}, indent=2))
    else:
        for path in written:
            typer.echo(str(path))
        if not written:
            typer.echo(f"job {job_id} has no output files yet")


@batch_app.command()
def logs(
    endpoint: EndpointArg,
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    tail: Annotated[int, typer.Option("--tail", min=1, max=10_000, help="Last lines per runner.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends (or Ctrl-C).")
    ] = False,
    key: KeyOpt = None,
    state_dir: StateOpt = Path(DEFAULT_STATE_DIR),
    as_json: JsonOpt = False,
) -> None:
    """Print a job's runner logs (one per instance locally, one per pod in the cluster)."""
    with _job(endpoint, job_id, key, state_dir, as_json) as batch_job:
        try:
            # Following reads whole logs (up to MAX_LOG_LINES a runner) and prints what is beyond the lines seen.
            texts = batch_job.logs(MAX_LOG_LINES if follow else tail)
            if as_json and not follow:
                typer.echo(json.dumps(texts, indent=2))
                return
            seen: dict[str, int] = {}
            for name, text in texts.items():
                lines = text.splitlines()
                if len(texts) > 1 and lines:
                    typer.echo(f"==> {name} <==")
                for line in lines[-tail:]:
                    typer.echo(line)
                seen[name] = len(lines)
            while follow and batch_job.info["status"] not in TERMINAL:
                time.sleep(1.0)
                batch_job.refresh()
                for name, text in batch_job.logs(MAX_LOG_LINES).items():
                    lines = text.splitlines()
                    for line in lines[seen.get(name, 0) :]:
                        typer.echo(f"{name} | {line}")
                    seen[name] = len(lines)
        except KeyboardInterrupt:
            return


def register(app: typer.Typer) -> None:
    """Add ``endpoints batch`` to the main command."""
    app.add_typer(batch_app, name="batch")
