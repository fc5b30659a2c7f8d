"""What a batch runner reports: its exit statuses, the job's state as the journal tells it (``job_status``, read by
the launchers too), the summary file and the termination reason."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

from contract.batch import TERMINATION_LOG_ENV
from serving.batch.journal import atomic_write_json, read_journal
from serving.batch.runconfig import JobSettings

# 3 (the job failed) is contract.batch.EXIT_JOB_FAILED: the Job's podFailurePolicy names it.
EXIT_OK = 0
EXIT_TERMINATED = 143  # stopped by SIGTERM after flushing finished work: the pod is retried and resumes


def progress(records: dict[int, dict[str, Any]], total: int, rows_at_start: int, elapsed: float) -> dict[str, Any]:
    """Done/total, rows/s over this run and the ETA, from journal records."""
    done = len(records)
    rows = sum(r["rows"] for r in records.values())
    rate = (rows - rows_at_start) / elapsed if elapsed > 0 else 0.0
    done_rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / done_rate if done_rate > 0 and done < total else (0.0 if done >= total else None)
    return {
        "done": done,
        "total": total,
        "percent": 100.0 * done / total if total else 100.0,
        "rows": rows,
        "failed_items": sum(r["failed_items"] for r in records.values()),
        "rows_per_second": round(rate, 3),
        "eta_seconds": None if eta is None or math.isinf(eta) else round(eta, 1),
    }


def job_status(
    settings: JobSettings,
    interrupted: bool = False,
    failure: str | None = None,
    known: tuple[dict[str, Any] | None, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The job's state as the journal tells it: counts, failures with reasons, timings, status.

    ``known``: ``job.json`` and the journal records when the caller has them in memory (the runner, after its
    last commit); default None reads them from disk.
    """
    job, records = known if known is not None else read_journal(settings)
    if job is not None and job.get("job_id") != settings.resolved_job_id():
        job, records = None, []  # the folder holds another job's state: none of it is this job's progress
    by_mb = {r["mini_batch"]: r for r in records}
    total = job["mini_batches"] if job else 0
    failed_items = sum(r["failed_items"] for r in by_mb.values())
    threshold = settings.error_threshold
    if failure or (threshold != -1 and failed_items > threshold):
        status = "Failed"
    elif job and len(by_mb) >= total:
        status = "Completed"
    elif interrupted:
        status = "Interrupted"
    else:
        status = "Running"
    seconds = [r["seconds"] for r in by_mb.values()]
    times = [r["committed_at"] for r in by_mb.values()]
    elapsed = (max(times) - job["created"]) if job and times else 0.0
    return {
        "job_id": job["job_id"] if job else settings.resolved_job_id(),
        "status": status,
        "error": failure
        or (f"{failed_items} failed items exceed error_threshold {threshold}" if status == "Failed" else None),
        "files": job["files"] if job else 0,
        "mini_batches": {"total": total, "done": len(by_mb), "failed": sum(1 for r in by_mb.values() if r["error"])},
        "items": {
            "succeeded": sum(r["items"] - r["failed_items"] for r in by_mb.values()),
            "failed": failed_items,
        },
        "rows": sum(r["rows"] for r in by_mb.values()),
        "progress": progress(by_mb, total, 0, elapsed),
        "failures": [
            {
                "mini_batch": r["mini_batch"],
                "failed_items": r["failed_items"],
                "attempts": r["attempts"],
                "reason": r["error"],
            }
            for r in sorted(by_mb.values(), key=lambda r: r["mini_batch"])
            if r["error"]
        ],
        "timings": {
            "elapsed_seconds": round(elapsed, 3),
            "mini_batch_seconds_mean": round(sum(seconds) / len(seconds), 6) if seconds else None,
            "mini_batch_seconds_max": round(max(seconds), 6) if seconds else None,
        },
        "output": str(settings.output_path) if settings.output_action == "append_row" else None,
    }


def write_termination_log(reason: str) -> None:
    """Write why the job failed to the file named by ``ENDPOINTS_BATCH_TERMINATION_LOG`` when set (Kubernetes'
    ``terminationMessagePath`` idea: the launcher shows it as the job's error instead of pointing at a log).
    Never raises: it is a courtesy."""
    path = os.environ.get(TERMINATION_LOG_ENV)
    if not path:
        return
    with contextlib.suppress(OSError):
        Path(path).write_text(reason[:4096] + "\n")


def write_summary(
    settings: JobSettings,
    job_id: str,
    interrupted: bool,
    failure: str | None,
    known: tuple[dict[str, Any] | None, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Write ``<output stem>.summary.json`` (always, also on failure and SIGTERM) and return it.

    ``known``: as for :func:`job_status`; default None reads the journal from disk.
    """
    summary = job_status(settings, interrupted=interrupted, failure=failure, known=known)
    summary["job_id"] = job_id
    atomic_write_json(settings.summary_path, summary)
    return summary
