"""Local launcher: each job is ``instance_count`` runner processes on this machine; state lives on disk.

Layout of ``state_dir/jobs/<id>/``: ``request.json`` (the submission), ``settings.json`` (runner settings),
``procs.json`` (pids and their start times, once started), ``canceled`` (marker), ``final.json`` (terminal
status, written once), ``instance-<i>.log``. Runner processes run in their own session, so they outlive the
job API; a restarted API reads the folder, checks the pids (with their start time, so a reused pid is not
mistaken for a runner) and the runner's journal, and carries on. Jobs beyond ``max_running`` wait as Queued
and start when a running job finishes; a runner stopped by SIGTERM that nobody asked for (the machine shut
down) is started again and resumes from its journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contract.batch import TERMINATION_LOG_ENV
from contract.batch_settings import RunnerSettings
from serving.batch.journal import atomic_write_json
from serving.batch.launchers import TERMINAL, JobConflictError, JobInfo, JobNotFoundError, JobRequest
from serving.batch.status import EXIT_TERMINATED, job_status

MAX_RESTARTS = 3
MAX_LOG_LINE_BYTES = 64 * 1024  # a runner's log line longer than this is cut (GET /jobs/<id>/logs)


def _start_time(pid: int) -> str | None:
    """Start time of a process (field 22 of /proc/<pid>/stat), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has finished
    return fields[19]


def _reasons(d: Path) -> list[str]:
    """Why runners of a job failed, as they wrote it (``instance-<i>.reason``), without repeats."""
    out: list[str] = []
    for path in sorted(d.glob("instance-*.reason")):
        with contextlib.suppress(OSError):
            reason = path.read_text().strip()
            if reason and reason not in out:
                out.append(reason)
    return out


class LocalLauncher:
    """See the module docstring."""

    def __init__(self, state_dir: str | Path, max_running: int = 2, python: str = sys.executable) -> None:
        """Use (or create) a state folder.

        Args:
            state_dir: Folder holding ``jobs/<id>/``.
            max_running: Jobs running at once; more wait as Queued (default 2).
            python: Interpreter that runs ``-m serving.batch.runner`` (default: this one).
        """
        self.root = Path(state_dir).resolve() / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running = max_running
        self.python = python
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._thread_lock = threading.RLock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One state change at a time: across threads (API requests, the reconcile loop) and across processes
        (a job API and the CLI on the same state folder), so a queued job is never started twice."""
        with self._thread_lock:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    # -- helpers ---------------------------------------------------------------------------------------
    def _dir(self, job_id: str) -> Path:
        d = self.root / job_id
        if not (d / "request.json").is_file():
            raise JobNotFoundError(f"no batch job {job_id!r}")
        return d

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _alive(self, procs: dict[str, Any]) -> list[int]:
        alive = []
        for p in procs["processes"]:
            child = self._children.get(p["pid"])
            if child is not None and child.poll() is not None:
                p["exit_code"] = child.returncode
                continue
            if _start_time(p["pid"]) == p["start_time"]:
                alive.append(p["pid"])
        return alive

    def _start(self, d: Path, restarts: int = 0) -> None:
        settings = RunnerSettings.model_validate_json((d / "settings.json").read_text())
        # A resumed job starts over from its journal: the previous run's verdict and reasons no longer hold.
        for stale in [d / "final.json", d / "canceled", *d.glob("instance-*.reason")]:
            stale.unlink(missing_ok=True)
        processes = []
        for i in range(settings.instance_count):
            log = open(d / f"instance-{i}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
            try:
                child = subprocess.Popen(
                    [
                        self.python,
                        "-m",
                        "serving.batch.runner",
                        "--settings",
                        str(d / "settings.json"),
                        "--instance-index",
                        str(i),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=d,
                    env={**os.environ, TERMINATION_LOG_ENV: str(d / f"instance-{i}.reason")},
                    start_new_session=True,  # runners outlive the job API and its signals
                )
            finally:
                log.close()
            self._children[child.pid] = child
            processes.append({"pid": child.pid, "start_time": _start_time(child.pid), "instance": i})
        atomic_write_json(d / "procs.json", {"processes": processes, "started": time.time(), "restarts": restarts})

    # -- Launcher interface --------------------------------------------------------------------------
    def submit(self, request: JobRequest) -> JobInfo:
        """Write the job down, then start it now or leave it Queued (see :meth:`reconcile`).

        The same submission again (same id, deployment, input, output and settings) is a re-run: a Failed or
        Canceled job resumes from its journal, a Queued, Running or Completed one is returned as it is.

        Raises:
            JobConflictError: the id is taken by a different submission.
        """
        with self._locked():
            d = self.root / request.id
            if (d / "request.json").is_file():
                self._rerun(d, request)
            else:
                self._write(request)
        self.reconcile()
        return self.get(request.id)

    def _rerun(self, d: Path, request: JobRequest) -> None:
        before = self._read(d / "request.json") or {}
        new = request.model_dump()
        differ = [k for k in ("deployment", "input", "output", "settings") if before.get(k) != new[k]]
        if differ:
            raise JobConflictError(
                f"batch job {request.id!r} already exists with another {' and '.join(differ)}; re-run it with the "
                "same arguments to resume it, or choose another job id"
            )
        if self._info(d).status in ("Failed", "Canceled"):
            procs = self._read(d / "procs.json") or {}
            self._start(d, restarts=procs.get("restarts", 0))

    def resume(self, job_id: str) -> JobInfo:
        """Start a Failed or Canceled job's runners again (a Queued one now); they skip what the journal holds.

        Raises:
            JobNotFoundError: unknown id.
            JobConflictError: the job is Running or Completed.
        """
        with self._locked():
            d = self._dir(job_id)
            info = self._info(d)
            if info.status not in ("Failed", "Canceled", "Queued"):
                raise JobConflictError(
                    f"batch job {job_id!r} is {info.status}; only Failed, Canceled or Queued jobs can be resumed"
                )
            procs = self._read(d / "procs.json") or {}
            self._start(d, restarts=procs.get("restarts", 0))
            return self._info(d)

    def _write(self, request: JobRequest) -> None:
        settings = RunnerSettings.model_validate(request.settings)  # validated by the caller; fail loudly here
        d = self.root / request.id
        try:
            d.mkdir()
        except FileExistsError as e:
            raise JobConflictError(f"batch job {request.id!r} already exists") from e
        atomic_write_json(d / "settings.json", settings.model_dump())
        atomic_write_json(d / "request.json", {**request.model_dump(), "created": time.time()})

    def get(self, job_id: str) -> JobInfo:
        """The job's state from its folder, its processes and its runner journal."""
        with self._locked():
            return self._info(self._dir(job_id))

    def list(self) -> list[JobInfo]:
        """Every job, newest first (reading starts nothing: :meth:`reconcile` does)."""
        with self._locked():
            infos = [self._info(d) for d in self.root.iterdir() if (d / "request.json").is_file()]
        return sorted(infos, key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str) -> JobInfo:
        """Mark the job canceled and SIGTERM its runners (they commit finished mini-batches and stop)."""
        with self._locked():
            return self._cancel(job_id)

    def _cancel(self, job_id: str) -> JobInfo:
        d = self._dir(job_id)
        info = self._info(d)
        if info.status in TERMINAL:
            raise JobConflictError(
                f"batch job {job_id!r} is {info.status}; only Queued or Running jobs can be canceled"
            )
        (d / "canceled").write_text(str(time.time()))
        procs = self._read(d / "procs.json")
        if procs:
            for pid in self._alive(procs):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        return self._info(d)

    def logs(self, job_id: str, tail: int) -> dict[str, str]:
        """The last ``tail`` lines of each runner's log, by instance index (``"0"``, ``"1"``, ...).

        Raises:
            JobNotFoundError: unknown id.
        """
        d = self._dir(job_id)
        logs = sorted(d.glob("instance-*.log"), key=lambda p: int(p.stem.rpartition("-")[2]))
        return {p.stem.rpartition("-")[2]: tail_lines(p, tail) for p in logs}

    def reconcile(self) -> None:
        """Start queued jobs while fewer than ``max_running`` run; restart runners stopped by a stray SIGTERM."""
        with self._locked():
            self._reconcile()

    def _reconcile(self) -> None:
        dirs = sorted(
            (d for d in self.root.iterdir() if (d / "request.json").is_file() and not (d / "final.json").exists()),
            key=lambda d: (self._read(d / "request.json") or {}).get("created", 0),
        )
        running = 0
        queued = []
        for d in dirs:
            info = self._info(d)
            if info.status == "Running":
                running += 1
            elif info.status == "Queued":
                queued.append(d)
        for d in queued[: max(0, self.max_running - running)]:
            procs = self._read(d / "procs.json")
            self._start(d, restarts=procs["restarts"] + 1 if procs and procs.get("processes") else 0)

    def _info(self, d: Path) -> JobInfo:
        request = self._read(d / "request.json") or {}
        settings = RunnerSettings.model_validate_json((d / "settings.json").read_text())
        final = self._read(d / "final.json")
        summary = job_status(settings)
        status: str
        error = None
        finished = None
        if final is not None:
            status, error, finished = final["status"], final.get("error"), final.get("finished")
        else:
            procs = self._read(d / "procs.json")
            canceled = (d / "canceled").exists()
            if procs is None or not procs.get("processes"):
                status = "Canceled" if canceled else "Queued"
            elif self._alive(procs):
                status = "Canceled" if canceled else "Running"
            else:
                written = self._read(settings.summary_path) or {}
                if written.get("job_id") != settings.resolved_job_id():
                    written = {}  # another job's summary (its output folder was named again): not ours
                codes = [p.get("exit_code") for p in procs["processes"]]
                reasons = _reasons(d)
                if canceled:
                    status = "Canceled"
                elif summary["status"] == "Completed" and written.get("status") == "Completed":
                    status = "Completed"
                elif written.get("status") == "Failed" or summary["status"] == "Failed" or reasons:
                    status = "Failed"
                    error = written.get("error") or (summary["error"] if summary["status"] == "Failed" else None)
                    error = error or "; ".join(reasons)
                elif (
                    written.get("status") == "Interrupted"
                    and all(c in (None, EXIT_TERMINATED) for c in codes)
                    and procs.get("restarts", 0) < MAX_RESTARTS
                ):
                    # Stopped by a SIGTERM nobody here sent (a shutdown): the job API's reconcile loop starts it
                    # again and it resumes its journal. Reading the status changes nothing.
                    status = "Queued"
                else:
                    status = "Failed"
                    error = (
                        f"runner exited before the job finished (exit codes {codes}); see {d}/instance-*.log; "
                        f"`endpoints batch resume` (or the same invoke again) resumes it"
                    )
            if status in TERMINAL:
                finished = time.time()
                atomic_write_json(d / "final.json", {"status": status, "error": error, "finished": finished})
        return JobInfo(
            id=d.name,
            endpoint=request.get("endpoint", ""),
            deployment=request.get("deployment", ""),
            status=status,  # type: ignore[arg-type]
            input=settings.input,
            output=settings.output_dir,
            output_file_name=settings.output_file_name,
            created=request.get("created", 0.0),
            finished=finished,
            error=error,
            progress=summary["progress"],
            counts={
                "files": summary["files"],
                "mini_batches": summary["mini_batches"],
                "items": summary["items"],
                "rows": summary["rows"],
                "failures": summary["failures"],
            },
            settings=settings.model_dump(),
        )


def tail_lines(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file (each cut at :data:`MAX_LOG_LINE_BYTES`), read in one pass."""
    try:
        with path.open("rb") as f:
            last = deque((line[:MAX_LOG_LINE_BYTES] for line in f), maxlen=lines)
    except OSError:
        return ""
    return b"".join(last).decode("utf-8", errors="replace")
