"""Launchers start batch jobs and report their state; the job API talks to one through :class:`Launcher`.

* :class:`serving.batch.launchers.local.LocalLauncher`: runner processes on this machine, state on disk
  (a restarted job API finds its jobs again).
* :class:`serving.batch.launchers.kubernetes.KubernetesLauncher`: one Indexed Job per batch job, created
  from the deployment's Job template; the state is read back from the Job.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

JobStatus = Literal["Queued", "Running", "Completed", "Failed", "Canceled"]
TERMINAL: frozenset[str] = frozenset({"Completed", "Failed", "Canceled"})


class JobNotFoundError(LookupError):
    """No job of that id."""


class JobConflictError(RuntimeError):
    """The job exists already, or cannot change state (e.g. cancel a finished job)."""


class JobInfo(BaseModel):
    """What ``GET /jobs/{id}`` returns."""

    id: str = Field(description="Job id.")
    endpoint: str = Field(description="Batch endpoint name.")
    deployment: str = Field(description="Deployment that scores the job.")
    status: JobStatus = Field(description="Queued, Running, Completed, Failed or Canceled.")
    input: str = Field(description="Input file, folder, glob or URI.")
    output: str = Field(description="Output folder.")
    output_file_name: str = Field(description="Append-row output file inside the output folder.")
    created: float = Field(description="Submission time (Unix seconds).")
    finished: float | None = Field(default=None, description="Time the job reached a terminal status.")
    error: str | None = Field(default=None, description="Why the job failed.")
    progress: dict[str, Any] = Field(default_factory=dict, description="done/total mini-batches, rows/s, ETA.")
    counts: dict[str, Any] = Field(default_factory=dict, description="Files, items, rows, failures.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Effective runner settings of the job.")


class JobRequest(BaseModel):
    """One submission, after the job API picked the deployment and mapped the spec."""

    id: str
    endpoint: str
    deployment: str
    input: str
    output: str
    settings: dict[str, Any] = Field(description="Runner settings (contract.batch_settings.RunnerSettings fields).")


class Launcher(Protocol):
    """Starts jobs and reports their state."""

    def submit(self, request: JobRequest) -> JobInfo:
        """Start (or queue) a job.

        Raises:
            JobConflictError: a job with this id exists.
        """
        ...

    def get(self, job_id: str) -> JobInfo:
        """The job's current state.

        Raises:
            JobNotFoundError: unknown id.
        """
        ...

    def list(self) -> list[JobInfo]:
        """Every job, newest first."""
        ...

    def cancel(self, job_id: str) -> JobInfo:
        """Stop a job (finished mini-batches stay in the output).

        Raises:
            JobNotFoundError: unknown id.
            JobConflictError: the job already finished.
        """
        ...
