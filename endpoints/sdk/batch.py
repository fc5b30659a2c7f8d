"""Batch endpoints from Python: ``BatchEndpointClient`` submits jobs, ``BatchJob`` follows one.

    client = BatchEndpointClient("https://cars-batch.example.com/jobs", key="...")   # the exported jobsUri
    job = client.invoke("s3://bucket/images/", mini_batch_size=20)
    job.wait(progress=True)          # a rich progress bar on stderr; returns the final job
    job.download("predictions/")     # the output folder's files
    print(job.logs()["0"])           # runner logs, by instance (or pod)

The same client runs jobs on this machine when given a batch endpoint folder instead of a URL (runner processes,
state under ``state_dir``), exactly as ``endpoints batch ... FOLDER`` does.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from endpoints.sdk.errors import EndpointError, spec_message

TERMINAL = ("Completed", "Failed", "Canceled")
DEFAULT_STATE_DIR = ".endpoints/batch"
DEFAULT_LOG_LINES = 1000


def job_api_base(url: str) -> str:
    """The job API's base URL from what a user holds: the exported ``jobsUri`` (``.../jobs``) or the base itself."""
    base = url.rstrip("/")
    return base[: -len("/jobs")] if base.endswith("/jobs") else base


class JobBackend(Protocol):
    """The job operations, over HTTP or on this machine."""

    def submit(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def get(self, job_id: str) -> dict[str, Any]: ...
    def list_jobs(self) -> list[dict[str, Any]]: ...
    def cancel(self, job_id: str) -> dict[str, Any]: ...
    def resume(self, job_id: str) -> dict[str, Any]: ...
    def outputs(self, job_id: str) -> list[dict[str, Any]]: ...
    def fetch(self, job_id: str, name: str, dest: Path) -> None: ...
    def logs(self, job_id: str, tail: int) -> dict[str, str]: ...
    def close(self) -> None: ...


class HttpJobs:
    """A job API (``serving.batch.api``) over HTTP with a bearer key or token."""

    def __init__(self, url: str, credential: Callable[[], str] | None, timeout: float = 30.0) -> None:
        """Remember the base URL (``jobsUri`` accepted as it is) and the credential provider."""
        self.base = job_api_base(url)
        self.credential = credential
        self.client = httpx.Client(base_url=self.base, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.credential()}"} if self.credential is not None else {}

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self.client.request(method, path, headers=self._headers(), **kw)
        except httpx.HTTPError as e:
            raise EndpointError(f"{self.base}{path}: {type(e).__name__}: {e}") from e
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = data.get("error", data) if isinstance(data, dict) else data
            rid = response.headers.get("x-request-id")
            raise EndpointError(
                f"{method} {path}: HTTP {response.status_code}: {message}", status=response.status_code, request_id=rid
            )
        return data

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /jobs."""
        return self._call("POST", "/jobs", json=body)

    def get(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}."""
        return self._call("GET", f"/jobs/{quote(job_id, safe='')}")

    def list_jobs(self) -> list[dict[str, Any]]:
        """GET /jobs."""
        return self._call("GET", "/jobs")["jobs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """POST /jobs/{id}/cancel."""
        return self._call("POST", f"/jobs/{quote(job_id, safe='')}/cancel")

    def resume(self, job_id: str) -> dict[str, Any]:
        """POST /jobs/{id}/resume."""
        return self._call("POST", f"/jobs/{quote(job_id, safe='')}/resume")

    def outputs(self, job_id: str) -> list[dict[str, Any]]:
        """GET /jobs/{id}/outputs."""
        return self._call("GET", f"/jobs/{quote(job_id, safe='')}/outputs")["files"]

    def fetch(self, job_id: str, name: str, dest: Path) -> None:
        """GET /jobs/{id}/outputs/{name}, streamed into ``dest``."""
        path = f"/jobs/{quote(job_id, safe='')}/outputs/{quote(name)}"
        try:
            with self.client.stream("GET", path, headers=self._headers()) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise(response, path)
                tmp = dest.with_name(f".{dest.name}.part")
                with tmp.open("wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
                tmp.replace(dest)
        except httpx.HTTPError as e:
            raise EndpointError(f"{self.base}{path}: {type(e).__name__}: {e}") from e

    def _raise(self, response: httpx.Response, path: str) -> None:
        try:
            message = response.json().get("error", response.text[:200])
        except ValueError:
            message = response.text[:200]
        raise EndpointError(f"GET {path}: HTTP {response.status_code}: {message}", status=response.status_code)

    def logs(self, job_id: str, tail: int) -> dict[str, str]:
        """GET /jobs/{id}/logs?tail=N."""
        path = f"/jobs/{quote(job_id, safe='')}/logs"
        return self._call("GET", path, params={"tail": tail})["logs"]


class LocalJobs:
    """Runs the jobs of a batch endpoint folder on this machine (the job API's own code, no server)."""

    def __init__(self, folder: Path, state_dir: Path) -> None:
        """Load and validate the endpoint folder.

        Raises:
            EndpointError: not a batch endpoint folder, or an invalid spec.
        """
        from endpoints.errors import SpecError
        from endpoints.local.batch_api import local_api

        if not (folder / "endpoint.yml").is_file():
            raise EndpointError(
                f"got {str(folder)!r}; give a job API URL (http[s]://...) or a batch endpoint folder holding "
                "endpoint.yml"
            )
        try:
            self.api = local_api(str(folder), str(state_dir / folder.resolve().name))
        except (SpecError, ValueError) as e:
            raise EndpointError(spec_message(e)) from e
        self.api.confine_outputs = False  # in process, on the user's own machine: an output may be any folder
        self.launcher: Any = self.api.launcher
        # Reading a job changes nothing; only a caller that runs jobs (``BatchJob.wait``) starts queued ones, as the
        # job API's background loop does.
        self.start_queued = False

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
            raise EndpointError(
                f"{'.'.join(map(str, first['loc']))}: got {first.get('input')!r}; {first['msg']}"
            ) from e
        except (BadRequestError, JobNotFoundError, JobConflictError) as e:
            raise EndpointError(spec_message(e)) from e

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's state (with ``start_queued``, queued jobs are started first, as the job API's loop would)."""
        from serving.batch.launchers import JobNotFoundError

        if self.start_queued:
            self.launcher.reconcile()
        try:
            return self.launcher.get(job_id).model_dump()
        except JobNotFoundError as e:
            raise EndpointError(spec_message(e)) from e

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job of this endpoint folder, newest first."""
        return [j.model_dump() for j in self.launcher.list()]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """SIGTERM the job's runners."""
        from serving.batch.launchers import JobConflictError, JobNotFoundError

        try:
            return self.launcher.cancel(job_id).model_dump()
        except (JobNotFoundError, JobConflictError) as e:
            raise EndpointError(spec_message(e)) from e

    def resume(self, job_id: str) -> dict[str, Any]:
        """Start a Failed or Canceled job's runners again (they resume from the journal)."""
        from serving.batch.launchers import JobConflictError, JobNotFoundError

        try:
            return self.launcher.resume(job_id).model_dump()
        except (JobNotFoundError, JobConflictError) as e:
            raise EndpointError(spec_message(e)) from e

    def outputs(self, job_id: str) -> list[dict[str, Any]]:
        """The output folder's files (as ``GET /jobs/{id}/outputs``)."""
        from serving.batch.job_files import list_outputs

        return list_outputs(self.get(job_id)["output"])

    def fetch(self, job_id: str, name: str, dest: Path) -> None:
        """Copy one output file."""
        from serving.batch.job_files import OutputNameError, output_file

        try:
            shutil.copyfile(output_file(self.get(job_id)["output"], name), dest)
        except (OutputNameError, FileNotFoundError) as e:
            raise EndpointError(f"batch job {job_id!r}: {e}") from e

    def logs(self, job_id: str, tail: int) -> dict[str, str]:
        """The runners' logs by instance."""
        from serving.batch.launchers import JobNotFoundError

        try:
            return self.launcher.logs(job_id, tail)
        except JobNotFoundError as e:
            raise EndpointError(spec_message(e)) from e


class BatchEndpointClient:
    """Submits and follows the jobs of one batch endpoint.

    Args:
        target: The job API URL (the exported ``jobsUri``, with or without ``/jobs``), or a batch endpoint folder
            (jobs run on this machine).
        key: An endpoint key (URL mode).
        token: A token (URL mode).
        credential: Called per request for a fresh key or token (URL mode), instead of ``key``/``token``.
        state_dir: Folder mode: where jobs keep state and output (default ``.endpoints/batch``).
        timeout: Seconds per HTTP request (default 30).

    Raises:
        EndpointError: more than one credential, or a folder that is not a valid batch endpoint.
    """

    def __init__(
        self,
        target: str | Path,
        *,
        key: str | None = None,
        token: str | None = None,
        credential: Callable[[], str] | None = None,
        state_dir: str | Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        if sum(x is not None for x in (key, token, credential)) > 1:
            raise EndpointError("key, token, credential: give at most one")
        text = str(target)
        self.backend: JobBackend
        if text.startswith(("http://", "https://")):
            secret = key if key is not None else token
            provider = credential or ((lambda: secret) if secret is not None else None)
            self.backend = HttpJobs(text, provider, timeout)
        else:
            self.backend = LocalJobs(Path(text), Path(state_dir or DEFAULT_STATE_DIR))
        self.target = text

    @property
    def is_local(self) -> bool:
        """Whether jobs run on this machine (folder mode)."""
        return isinstance(self.backend, LocalJobs)

    def __enter__(self) -> BatchEndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (URL mode)."""
        self.backend.close()

    def invoke(
        self,
        input: str,
        output: str | None = None,
        *,
        deployment: str | None = None,
        job_id: str | None = None,
        **overrides: Any,
    ) -> BatchJob:
        """Start a job scoring ``input`` (a file, folder, glob or fsspec URI).

        Args:
            input: What to score. A local relative path is made absolute in folder mode.
            output: Output folder (default: one per job under the endpoint's output root).
            deployment: Deployment (default: the endpoint's default).
            job_id: Job id (default ``batchjob-<hex>``).
            **overrides: Per-job settings, e.g. ``mini_batch_size=20``, ``max_retries=1`` (as ``--set``).

        Raises:
            EndpointError: the job API refused the job (the message names the field and value).
        """
        body: dict[str, Any] = {"input": input, "settings": overrides}
        if self.is_local and "://" not in input:
            body["input"] = str(Path(input).resolve())
        for name, value in (("output", output), ("deployment", deployment), ("job_id", job_id)):
            if value is not None:
                body[name] = value
        return BatchJob(self, self.backend.submit(body))

    def job(self, job_id: str) -> BatchJob:
        """An existing job.

        Raises:
            EndpointError: unknown id.
        """
        return BatchJob(self, self.backend.get(job_id))

    def jobs(self) -> list[BatchJob]:
        """Every job of the endpoint, newest first."""
        return [BatchJob(self, info) for info in self.backend.list_jobs()]


class BatchJob:
    """One batch job; ``info`` holds what the job API said last (``refresh()`` asks again)."""

    def __init__(self, client: BatchEndpointClient, info: dict[str, Any]) -> None:
        self.client = client
        self.info = info
        self.id: str = info["id"]

    def __repr__(self) -> str:
        return f"BatchJob(id={self.id!r}, status={self.info.get('status')!r})"

    def refresh(self) -> dict[str, Any]:
        """Read the job again; returns (and keeps) the new info."""
        self.info = self.client.backend.get(self.id)
        return self.info

    def status(self) -> str:
        """Current status: Queued, Running, Completed, Failed or Canceled."""
        return str(self.refresh()["status"])

    def wait(
        self,
        progress: bool = True,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        start_queued: bool = True,
    ) -> dict[str, Any]:
        """Poll until the job ends; with ``progress``, show a rich progress bar (mini-batches, rows/s) on stderr.

        Args:
            progress: Show the bar (default True).
            poll_s: Seconds between polls (default 0.5).
            timeout_s: Give up after this long (default: never).
            start_queued: Folder mode: start the job (and other queued ones) when a runner slot frees up, as the
                job API's background loop does (default True); False only watches. URL mode: the server does it.

        Returns:
            The final job info (check ``["status"]``).

        Raises:
            EndpointError: ``timeout_s`` passed first.
        """
        backend = self.client.backend
        if isinstance(backend, LocalJobs):
            before = backend.start_queued
            backend.start_queued = start_queued
            try:
                return self._wait(progress, poll_s, timeout_s)
            finally:
                backend.start_queued = before
        return self._wait(progress, poll_s, timeout_s)

    def _wait(self, progress: bool, poll_s: float, timeout_s: float | None) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def poll() -> dict[str, Any]:
            if deadline is not None and time.monotonic() > deadline:
                raise EndpointError(f"batch job {self.id} still {self.info['status']} after {timeout_s:g} s")
            time.sleep(poll_s)
            return self.refresh()

        info = self.refresh()
        if not progress:
            while info["status"] not in TERMINAL:
                info = poll()
            return info
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            done, total = job_fraction(info)
            task = bar.add_task(f"{self.id} {info['status']}", total=total, completed=done, rate="")
            while True:
                done, total = job_fraction(info)
                rate = (info.get("progress") or {}).get("rows_per_second")
                bar.update(
                    task,
                    completed=done,
                    total=total,
                    description=f"{self.id} {info['status']}",
                    rate=f"{rate:.1f} rows/s" if rate else "",
                )
                if info["status"] in TERMINAL:
                    return info
                info = poll()

    def cancel(self) -> dict[str, Any]:
        """Cancel the job (finished mini-batches stay in the output)."""
        self.info = self.client.backend.cancel(self.id)
        return self.info

    def resume(self) -> dict[str, Any]:
        """Start a Failed or Canceled job again: its runners skip every mini-batch the journal holds.

        Raises:
            EndpointError: unknown job, or one that is Running or Completed (the Kubernetes job API answers 409:
                its Job retries the pods itself).
        """
        self.info = self.client.backend.resume(self.id)
        return self.info

    def outputs(self) -> list[dict[str, Any]]:
        """The output folder's files: ``[{"name", "size"}]``."""
        return self.client.backend.outputs(self.id)

    def download(self, dest: str | Path) -> list[Path]:
        """Copy every output file into ``dest`` (created; subfolders kept). Returns the written paths."""
        root = Path(dest)
        written = []
        for item in self.outputs():
            target = root / item["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.backend.fetch(self.id, item["name"], target)
            written.append(target)
        return written

    def logs(self, tail: int = DEFAULT_LOG_LINES) -> dict[str, str]:
        """The last ``tail`` lines of each runner's log, by instance index (local) or pod name (cluster)."""
        return self.client.backend.logs(self.id, tail)


def job_fraction(info: dict[str, Any]) -> tuple[int, int]:
    """(done, total) for a progress bar: mini-batches, else instances."""
    p = info.get("progress") or {}
    if "total" in p:
        return int(p.get("done", 0)), int(p["total"]) or 1
    if "instances" in p:
        return int(p.get("instances_done", 0)), int(p["instances"]) or 1
    return 0, 1
