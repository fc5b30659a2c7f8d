"""The batch runner: one instance of a batch job (a pod of the Indexed Job, or a local process).

Run as ``python -m serving.batch.runner --settings settings.json [--input ...] [--output-dir ...]``; settings may
also come from ``ENDPOINTS_BATCH_SETTINGS`` (JSON). The instance index comes from ``JOB_COMPLETION_INDEX``
(set by Kubernetes for Indexed Jobs) or ``--instance-index``.

What it does: list the input files (sorted), split them into mini-batches of ``mini_batch_size``, take the
mini-batches whose number modulo ``instance_count`` is this instance's index, and score them with
``max_concurrency_per_instance`` worker processes. A mini-batch that raises, whose worker dies, or that runs
past ``timeout`` (its worker is SIGKILLed) is retried until ``max_retries + 1`` attempts were made. Every
finished mini-batch is committed exactly once (see :mod:`serving.batch.journal`). Past ``error_threshold``
failed items no new mini-batch starts and the job fails.

Exit codes: 0 this instance's share is done and the job has not failed; 3 the job failed (error threshold,
``init()`` failure, bad settings or input: retrying the pod cannot help, the Job's podFailurePolicy fails the
Job on it); 143 stopped by SIGTERM after flushing finished work (the pod is retried and resumes).

This module schedules the mini-batches over the worker processes (:class:`Runner`) and is the command line; the
input files and their mini-batches are :mod:`serving.batch.inputs`, what the runner reports (exit statuses,
summary, termination reason, ``job_status``) is :mod:`serving.batch.status`, the worker process
:mod:`serving.batch.worker`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import logging
import math
import multiprocessing as mp
import os
import select
import selectors
import signal
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from contract.batch import EXIT_JOB_FAILED
from serving import logformat
from serving.batch.inputs import InputError, list_inputs, split
from serving.batch.journal import Commit, Journal, OutputConflictError, read_journal
from serving.batch.runconfig import RunConfig, RunnerSettingsError, load_run_config
from serving.batch.status import EXIT_OK, EXIT_TERMINATED, progress, write_summary, write_termination_log

log = logging.getLogger("serving.batch.runner")

START_METHOD_ENV = "ENDPOINTS_BATCH_START_METHOD"
COMMIT_INTERVAL_S = 0.05
PREFETCH_SECONDS = 0.2
MAX_PREFETCH = 128
# Paths queued per worker stay well under a socket buffer (~200 KiB): the runner's send() never blocks on a worker
# that is busy (or hung) in run(), so the loop keeps watching deadlines.
MAX_QUEUED_BYTES = 64 * 1024
# A worker with at least two ticks of queued work does not wake the loop with each reply: its replies wait in the
# pipe and are read at the next tick (with the time each mini-batch ended, so deadlines stay exact). At small
# mini-batches (under two ticks each) this turns a wake-up per mini-batch into one per tick.
TICK_S = 0.02


def _default_start_method() -> str:
    # fork starts a worker in milliseconds (spawn re-imports everything, ~0.5 s each, paid again after
    # every timeout kill); it is safe because the runner's process has no threads when it forks.
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


class _Task:
    __slots__ = ("attempt", "deadline", "mini_batch", "size", "started")

    def __init__(self, mini_batch: int, attempt: int, started: float, deadline: float, size: int = 0) -> None:
        self.mini_batch = mini_batch
        self.attempt = attempt
        self.started = started
        self.deadline = deadline
        self.size = size  # bytes its paths take in the pipe, roughly (queued tasks only)


class _Worker:
    def __init__(self, proc: BaseProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.ready = False
        self.watched = False  # its sentinel is registered with the runner's selector
        self.conn_watched = False  # its pipe too: each reply wakes the loop
        self.task: _Task | None = None  # running now; its deadline counts
        # Sent ahead, in order: each starts when the one before ends, so the worker never waits for the loop.
        self.queued: collections.deque[_Task] = collections.deque()

    def promote(self, now: float, timeout: float) -> None:
        """The running task ended: the next queued one (if any) is running from now on."""
        self.task = self.queued.popleft() if self.queued else None
        if self.task is not None:
            self.task.started = now
            self.task.deadline = now + timeout


class Runner:
    """Scores this instance's share of a job; see the module docstring."""

    def __init__(self, settings: RunConfig, instance_index: int = 0) -> None:
        """Prepare (nothing is started until :meth:`run`).

        Args:
            settings: the job's settings.
            instance_index: this instance's index in ``[0, instance_count)``; default 0.
        """
        if not 0 <= instance_index < settings.instance_count:
            raise RunnerSettingsError(
                f"instance index: got {instance_index}; must be in [0, {settings.instance_count}) "
                "(JOB_COMPLETION_INDEX or --instance-index)"
            )
        self.settings = settings
        self.index = instance_index
        self.job_id = settings.resolved_job_id()
        self.stop_requested = False
        self._ctx = mp.get_context(os.environ.get(START_METHOD_ENV, _default_start_method()))
        self.workers: list[_Worker] = []
        self.failure: str | None = None
        self._summary_error: str | None = None
        self._stopping = self._ctx.Event()  # set at SIGTERM: workers hand queued mini-batches back unstarted
        self._mb_seconds: float | None = None  # moving average of a mini-batch's run time
        self._skipped: list[int] = []  # handed back unstarted at shutdown
        # One epoll set for the whole run (workers join and leave it), not a new poll set per wait: the loop
        # waits about twice per mini-batch.
        self._sel: selectors.BaseSelector | None = None

    # -- workers -------------------------------------------------------------------------------------
    def _worker_env(self) -> dict[str, str]:
        env = dict(self.settings.environment_variables)
        env["AZUREML_BI_OUTPUT_PATH"] = str(Path(self.settings.output_dir).resolve())
        if self.settings.model_dir:
            env["AZUREML_MODEL_DIR"] = str(Path(self.settings.model_dir).resolve())
        env["ENDPOINTS_BATCH_LOG_LEVEL"] = self.settings.logging_level
        return env

    def _start_worker(self) -> _Worker:
        # Imported here, before the fork, so that every forked worker starts with the worker and scoring modules
        # (and libc for PR_SET_PDEATHSIG) loaded; spawn imports them again anyway.
        from serving.batch.worker import preload, worker_main

        preload()
        if self._ctx.get_start_method() == "fork":
            # Forked workers share the runner's objects: keep the cyclic GC off them, or every collection in a
            # worker touches (and copies) the whole inherited heap.
            gc.freeze()
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(child, self.settings.entry_script, self.settings.model_dir, self._worker_env(), self._stopping),
            daemon=True,
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _kill(self, w: _Worker) -> None:
        if self._sel is not None:
            if w.conn_watched:
                self._sel.unregister(w.conn)
            if w.watched:
                self._sel.unregister(w.proc.sentinel)
        w.watched = w.conn_watched = False
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(5)
        w.conn.close()

    # -- main loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        """Run this instance to its end; returns the exit code (module docstring)."""
        s = self.settings
        journal = Journal(s, self.index)
        try:
            # Workers first: their start and init() (a model load, often the longest part of a start) overlap
            # listing the input and creating the journal. A job with fewer mini-batches than workers starts some
            # for nothing; they are killed at the end. The fork happens before the journal's sync thread exists.
            # The output folder exists before init() runs: scoring code may write to AZUREML_BI_OUTPUT_PATH there.
            Path(s.output_dir).mkdir(parents=True, exist_ok=True)
            while len(self.workers) < s.max_concurrency_per_instance:
                self.workers.append(self._start_worker())
            try:
                files = list_inputs(s.input)
            except InputError as e:
                return self._fail_early(str(e), summary=True)
            batches = split(files, s.mini_batch_size)
            try:
                resumed = journal.open(self.job_id, files, len(batches))
            except OutputConflictError as e:
                # The folder's summary is the other job's: it is left alone; the reason goes to the termination log.
                return self._fail_early(str(e), summary=False)
            journal.start_background_sync()
            code = self._run(journal, batches, resumed)
            if code == EXIT_JOB_FAILED:
                write_termination_log(self.failure or self._summary_error or "the job failed")
            return code
        finally:
            for w in self.workers:
                self._kill(w)
            self.workers = []
            journal.close()

    def _run(self, journal: Journal, batches: list[list[str]], resumed: bool) -> int:
        s = self.settings
        state = journal.refresh()
        mine = [i for i in range(len(batches)) if i % s.instance_count == self.index]
        pending = collections.deque(i for i in mine if i not in state.records)
        log.info(
            "job %s instance %d/%d: %d files, %d mini-batches of %d, %d for this instance, %d to do%s",
            self.job_id,
            self.index,
            s.instance_count,
            sum(map(len, batches)),
            len(batches),
            s.mini_batch_size,
            len(mine),
            len(pending),
            " (resumed)" if resumed else "",
        )
        attempts: dict[int, int] = collections.Counter()
        t0 = time.monotonic()
        rows_at_start = sum(r["rows"] for r in state.records.values())
        last_progress = t0
        threshold_hit = self._threshold_exceeded(state.failed_items)
        shared_threshold = s.instance_count > 1 and s.error_threshold != -1
        stop_since: float | None = None
        commits: list[Commit] = []  # finished, not yet committed
        last_commit = time.monotonic()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous_wakeup = signal.set_wakeup_fd(wake_w)
        previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._sel = sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ)
        try:
            while True:
                # Uncommitted failures count too: the threshold must hold before anything new starts.
                if not threshold_hit and self._threshold_exceeded(
                    state.failed_items + sum(c.failed_items for c in commits)
                ):
                    threshold_hit = True
                    log.error(
                        "error threshold exceeded: %d failed items > error_threshold %d; no new mini-batches start",
                        state.failed_items + sum(c.failed_items for c in commits),
                        s.error_threshold,
                    )
                if (
                    shared_threshold
                    and not threshold_hit
                    and pending
                    and any(w.ready and w.task is None for w in self.workers)
                ):
                    # Another instance's failures count too: read them under the job's lock just before starting,
                    # so no mini-batch starts after a commit that passed the threshold (exact across instances).
                    with journal.locked():
                        state = journal.refresh()
                        threshold_hit = self._check_threshold(state.failed_items + sum(c.failed_items for c in commits))
                        if not threshold_hit and not (self.stop_requested or self.failure):
                            self._dispatch_idle(pending, attempts, batches)
                dispatching = not (self.stop_requested or threshold_hit or self.failure)
                want = min(s.max_concurrency_per_instance, len(pending)) if dispatching else 0
                while len(self.workers) < want:
                    self.workers.append(self._start_worker())
                if dispatching and pending:
                    failed_now = state.failed_items + sum(c.failed_items for c in commits)
                    sends: dict[int, list[tuple[int, list[str]]]] = {}  # one message per worker and loop
                    for i, w in enumerate(self.workers):  # first a running mini-batch for every idle worker
                        if w.ready and w.task is None and pending:
                            mb = pending.popleft()
                            attempts[mb] += 1
                            now = time.monotonic()
                            w.task = _Task(mb, attempts[mb], now, now + s.timeout)
                            sends[i] = [(mb, batches[mb])]
                    # Then queue more per worker (as multiprocessing.Pool does) so a worker never waits for this
                    # loop; only while failures of everything in flight (running ones included) could not pass
                    # the threshold before a queued mini-batch starts.
                    in_flight = self._in_flight(batches)
                    for i, w in enumerate(self.workers):
                        if shared_threshold:
                            break  # nothing queued ahead: its start could not be checked against other instances
                        depth = self._prefetch_depth(len(pending))
                        queued_bytes = sum(t.size for t in w.queued)
                        while (
                            w.ready
                            and w.task is not None
                            and len(w.queued) < depth
                            and pending
                            and queued_bytes < MAX_QUEUED_BYTES
                            and self._may_prefetch(failed_now, in_flight)
                        ):
                            mb = pending.popleft()
                            attempts[mb] += 1
                            size = sum(map(len, batches[mb])) + 16 * len(batches[mb])
                            w.queued.append(_Task(mb, attempts[mb], 0.0, math.inf, size))
                            queued_bytes += size
                            in_flight += len(batches[mb])
                            sends.setdefault(i, []).append((mb, batches[mb]))
                    for i, send in sends.items():
                        self.workers[i].conn.send(send)
                # Commit after dispatching (workers score on while the journal writes), grouping what finished
                # within COMMIT_INTERVAL_S: fewer, larger commits; a crash only means re-scoring those.
                busy = [w for w in self.workers if w.task is not None]
                now = time.monotonic()
                if commits and (now - last_commit >= COMMIT_INTERVAL_S or not busy or self.stop_requested):
                    journal.commit(commits)
                    commits = []
                    last_commit = now
                    state = journal.refresh()
                elif s.instance_count > 1 and now - last_commit >= COMMIT_INTERVAL_S:
                    state = journal.refresh()  # other instances' failures count against the threshold too
                    last_commit = now
                if not busy and not commits and (not dispatching or not pending):
                    break
                if self.stop_requested and stop_since is None:
                    stop_since = time.monotonic()
                    self._stopping.set()
                    log.warning(
                        "SIGTERM: no new mini-batches; %d running may finish within %.0fs", len(busy), s.drain_timeout
                    )
                now = time.monotonic()
                timeout = max(0.0, min([w.task.deadline - now for w in busy if w.task], default=s.progress_interval))
                timeout = min(timeout, s.progress_interval)
                if stop_since is not None:
                    timeout = min(timeout, max(0.0, stop_since + s.drain_timeout - now))
                if commits:
                    timeout = min(timeout, max(0.0, last_commit + COMMIT_INTERVAL_S - now))
                quiet_any = False
                for w in self.workers:
                    if not w.watched:
                        sel.register(w.proc.sentinel, selectors.EVENT_READ)
                        w.watched = True
                    # Only for short mini-batches: a slow one's reply is a rare wake-up, and an idle tick is not.
                    quiet = bool(
                        dispatching
                        and pending
                        and w.ready
                        and self._mb_seconds is not None
                        and self._mb_seconds < 2 * TICK_S
                        and len(w.queued) * self._mb_seconds >= 2 * TICK_S
                    )
                    if quiet and w.conn_watched:
                        sel.unregister(w.conn)
                        w.conn_watched = False
                    elif not quiet and not w.conn_watched:
                        sel.register(w.conn, selectors.EVENT_READ)
                        w.conn_watched = True
                    quiet_any |= quiet
                if quiet_any:
                    timeout = min(timeout, TICK_S)
                ready = {key.fileobj for key, _ in sel.select(timeout)}
                if wake_r in ready:
                    os.read(wake_r, 512)
                retry: list[tuple[_Worker, _Task | None, str, bool]] = []  # (worker, task, reason, kill it)
                for w in list(self.workers):
                    if w.conn_watched and w.conn not in ready and w.proc.sentinel not in ready:
                        continue
                    gone = False
                    try:
                        # Drain every reply already there (select() on one fd: Connection.poll() builds a selector).
                        while w.conn in ready or select.select([w.conn], [], [], 0)[0]:
                            ready.discard(w.conn)
                            self._handle(w, w.conn.recv(), batches, commits, retry)
                    except (EOFError, OSError):
                        gone = True  # the worker died; its sentinel says so (now or at the next wait)
                    if w.proc.sentinel in ready or (gone and not w.proc.is_alive()):
                        w.proc.join(1)
                        reason = f"worker process exited with code {w.proc.exitcode}"
                        if w.task is not None:
                            retry.append((w, w.task, reason, True))
                        elif not w.ready and w in self.workers and not self.failure:
                            self.failure = f"init() failed: {reason}"
                            log.error("%s", self.failure)
                            self._drop(w)
                        elif w in self.workers:
                            self._drop(w)
                now = time.monotonic()
                for w in self.workers:
                    if w.task is not None and now >= w.task.deadline and all(w is not r[0] for r in retry):
                        retry.append((w, w.task, f"run() timed out after {s.timeout:g}s", True))
                for mb in reversed(self._skipped):  # never started: not an attempt; runs again on restart
                    attempts[mb] -= 1
                    pending.appendleft(mb)
                self._skipped.clear()
                for w, task, reason, kill in retry:
                    if kill:
                        for t in reversed(w.queued):  # sent ahead but never started: not an attempt
                            attempts[t.mini_batch] -= 1
                            pending.appendleft(t.mini_batch)
                        w.task = None
                        w.queued.clear()
                        self._drop(w)  # a hung or dead worker is killed and replaced (init() runs again)
                    if task is None:
                        continue
                    mb = task.mini_batch
                    if attempts[mb] <= s.max_retries:
                        log.warning(
                            "mini-batch %d attempt %d/%d failed: %s; retrying",
                            mb,
                            attempts[mb],
                            s.max_retries + 1,
                            reason,
                        )
                        pending.appendleft(mb)
                    else:
                        log.error("mini-batch %d failed after %d attempts: %s", mb, attempts[mb], reason)
                        n = len(batches[mb])
                        commits.append(Commit(mb, b"", 0, n, n, attempts[mb], now - task.started, reason))
                if stop_since is not None and now >= stop_since + s.drain_timeout:
                    for w in list(self.workers):
                        abandoned = [*([w.task] if w.task else []), *w.queued]
                        for t in reversed(abandoned):
                            log.warning("mini-batch %d abandoned at shutdown; it runs again on restart", t.mini_batch)
                            pending.appendleft(t.mini_batch)
                        self._drop(w)
                if time.monotonic() - last_progress >= s.progress_interval:
                    last_progress = time.monotonic()
                    self._log_progress(state.records, len(batches), rows_at_start, t0)
        finally:
            for w in self.workers:
                w.watched = w.conn_watched = False
            self._sel = None
            sel.close()
            signal.signal(signal.SIGTERM, previous_handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_r)
            os.close(wake_w)
        for w in self.workers:
            if w.conn and not w.conn.closed:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
        # Under the job's lock: instances finishing together write their summaries one after the other, each
        # seeing every commit made before it, so the last summary written is never older than the journal.
        with journal.locked():
            state = journal.refresh()
            summary = write_summary(
                s,
                self.job_id,
                interrupted=self.stop_requested,
                failure=self.failure,
                known=(journal.job, list(state.records.values())),
            )
        self._log_progress(state.records, len(batches), rows_at_start, t0)
        self._summary_error = summary.get("error")
        log.info("summary: %s (%s)", summary["status"], s.summary_path)
        if self.failure or threshold_hit or summary["status"] == "Failed":
            return EXIT_JOB_FAILED
        if self.stop_requested:
            return EXIT_TERMINATED
        return EXIT_OK

    def _fail_early(self, reason: str, summary: bool) -> int:
        """The job fails before any mini-batch ran: log it, write the termination log and (when the output folder
        is not another job's) the summary with the reason."""
        log.error("%s", reason)
        write_termination_log(reason)
        if summary:
            job, _ = read_journal(self.settings)
            if job is None or job.get("job_id") == self.job_id:
                write_summary(self.settings, self.job_id, interrupted=False, failure=reason, known=(job, []))
        return EXIT_JOB_FAILED

    def _handle(
        self,
        w: _Worker,
        msg: tuple[Any, ...],
        batches: list[list[str]],
        commits: list[Commit],
        retry: list[tuple[_Worker, _Task | None, str, bool]],
    ) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = True
        elif kind == "init_error":
            self.failure = f"init() failed: {msg[1]}"
            log.error("%s", self.failure)
        elif kind == "ok" and w.task is not None:
            _, mb, data, rows, returned, columns, ended = msg
            task = w.task
            # The worker's clock (system-wide monotonic): the reply may be read a tick after the worker moved on.
            w.promote(ended, self.settings.timeout)
            took = max(0.0, ended - task.started)
            self._mb_seconds = took if self._mb_seconds is None else 0.8 * self._mb_seconds + 0.2 * took
            n = len(batches[mb])
            gap = max(0, n - returned)
            error = f"run() returned {returned} items for {n} files" if gap else None
            commits.append(Commit(mb, data, rows, n, gap, task.attempt, took, error, columns))
        elif kind == "skipped" and w.task is not None and w.task.mini_batch == msg[1]:
            self._skipped.append(w.task.mini_batch)
            w.promote(msg[-1], self.settings.timeout)
        elif kind == "error" and w.task is not None:
            task = w.task
            w.promote(msg[-1], self.settings.timeout)
            retry.append((w, task, msg[2], False))

    def _check_threshold(self, failed: int) -> bool:
        if self._threshold_exceeded(failed):
            log.error(
                "error threshold exceeded: %d failed items > error_threshold %d; no new mini-batches start",
                failed,
                self.settings.error_threshold,
            )
            return True
        return False

    def _dispatch_idle(
        self, pending: collections.deque[int], attempts: dict[int, int], batches: list[list[str]]
    ) -> None:
        """Start a mini-batch on every idle worker (the caller holds the job's lock)."""
        for w in self.workers:
            if w.ready and w.task is None and pending:
                mb = pending.popleft()
                attempts[mb] += 1
                now = time.monotonic()
                w.task = _Task(mb, attempts[mb], now, now + self.settings.timeout)
                w.conn.send([(mb, batches[mb])])

    def _drop(self, w: _Worker) -> None:
        self._kill(w)
        if w in self.workers:
            self.workers.remove(w)

    def _prefetch_depth(self, pending: int) -> int:
        """Mini-batches queued per worker: enough for PREFETCH_SECONDS of work (at most MAX_PREFETCH), at least one.

        Deep enough that a runner waiting for a CPU on a busy machine does not leave its workers idle (Pool
        queues every task up front).

        Near the end, no more than a fair share of what is left (``pending`` / workers), so that one worker is not
        left with a long queue while the others have finished: the job ends when its last worker does.
        """
        if self._mb_seconds is None:
            return 1
        by_time = math.ceil(PREFETCH_SECONDS / max(self._mb_seconds, 1e-6))
        fair = math.ceil(pending / max(1, len(self.workers)))
        return max(1, min(MAX_PREFETCH, by_time, fair))

    def _in_flight(self, batches: list[list[str]]) -> int:
        """Files of every mini-batch running or queued (0 when no error threshold applies: not needed)."""
        if self.settings.error_threshold == -1:
            return 0
        return sum(len(batches[t.mini_batch]) for w in self.workers for t in (w.task, *w.queued) if t)

    def _may_prefetch(self, failed: int, in_flight: int) -> bool:
        return self.settings.error_threshold == -1 or failed + in_flight <= self.settings.error_threshold

    def _threshold_exceeded(self, failed: int) -> bool:
        return self.settings.error_threshold != -1 and failed > self.settings.error_threshold

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def _log_progress(self, records: dict[int, dict[str, Any]], total: int, rows_at_start: int, t0: float) -> None:
        p = progress(records, total, rows_at_start, time.monotonic() - t0)
        eta = "?" if p["eta_seconds"] is None else f"{p['eta_seconds']:.0f}s"
        log.info(
            "progress: %d/%d mini-batches (%.1f%%), %d rows, %d failed items, %.1f rows/s, ETA %s",
            p["done"],
            p["total"],
            p["percent"],
            p["rows"],
            p["failed_items"],
            p["rows_per_second"],
            eta,
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.batch.runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", help="JSON settings file (ENDPOINTS_BATCH_SETTINGS is read too)")
    p.add_argument("--job-id")
    p.add_argument("--input")
    p.add_argument("--output-dir")
    p.add_argument("--output-file-name")
    p.add_argument("--output-action", choices=["append_row", "summary_only"])
    p.add_argument("--entry-script")
    p.add_argument("--model-dir")
    p.add_argument("--mini-batch-size", type=int)
    p.add_argument("--max-concurrency-per-instance", type=int)
    p.add_argument("--instance-count", type=int)
    p.add_argument("--max-retries", type=int)
    p.add_argument("--timeout", type=float)
    p.add_argument("--error-threshold", type=int)
    p.add_argument("--logging-level", choices=["debug", "info", "warning", "error", "critical"])
    p.add_argument("--overwrite", action="store_true", default=None)
    p.add_argument("--instance-index", type=int, help="default: JOB_COMPLETION_INDEX, else 0")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("settings", "instance_index") and v is not None}
    try:
        settings = load_run_config(args.settings, overrides)
        raw_index = (
            args.instance_index if args.instance_index is not None else os.environ.get("JOB_COMPLETION_INDEX", 0)
        )
        try:
            index = int(raw_index)
        except ValueError as e:
            raise RunnerSettingsError(f"JOB_COMPLETION_INDEX: got {raw_index!r}; expected an integer") from e
        logformat.configure(settings.logging_level.upper(), fields={"instance": index})
        runner = Runner(settings, index)
    except RunnerSettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        write_termination_log(str(e))
        return EXIT_JOB_FAILED
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
