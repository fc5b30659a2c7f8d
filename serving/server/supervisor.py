"""The serving process: one worker in-process, or a master that forks several on one port, restarts the ones that
crash, forwards SIGTERM and exits 3 when a worker cannot load the scoring script."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import tempfile
import time
from typing import Any

from serving.server.options import EXIT_OK, EXIT_RECYCLE, EXIT_SCRIPT, STOP_SIGNALS, ServerOptions
from serving.server.readiness import ReadyState
from serving.server.transport import bind_socket
from serving.server.worker import run_worker

# Every module of the serving process logs as "serving.server" (the name its log lines have always carried).
logger = logging.getLogger("serving.server")

RESTART_LIMIT = 5  # worker crashes (after ready) tolerated per minute before the master gives up


def serve(options: ServerOptions) -> int:
    """Run the server until SIGTERM/SIGINT; return the process exit status."""
    created_metrics_dir = None
    if options.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Set before any worker imports prometheus-client: each writes its values there, /metrics sums them.
        created_metrics_dir = tempfile.mkdtemp(prefix="endpoints-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created_metrics_dir
    try:
        if options.workers == 1:
            state = ReadyState(1)
            try:
                sock = bind_socket(options.host, options.port)
            except OSError as ex:
                logger.error("cannot listen on %s:%d: %s", options.host, options.port, ex)
                return 1
            _log_listening(options.host, sock.getsockname()[1], 1)
            with sock:
                return run_worker(0, options, state, sock)
        return _master(options)
    finally:
        if created_metrics_dir is not None:
            shutil.rmtree(created_metrics_dir, ignore_errors=True)


def _log_listening(host: str, port: int, workers: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    logger.info(
        "listening on http://%s:%d (%d worker%s, pid %d)", shown, port, workers, "s" * (workers > 1), os.getpid()
    )


def _master(options: ServerOptions) -> int:
    """Fork the workers, restart crashed ones, forward SIGTERM, exit 3 when a worker cannot load the script."""
    state = ReadyState(options.workers)
    try:
        # Held (bound, not listening) for the master's lifetime: resolves port 0 once for every worker and keeps
        # the port ours between worker restarts; a socket that does not listen is never handed connections.
        anchor = bind_socket(options.host, options.port, listen=False)
    except OSError as ex:
        logger.error("cannot bind %s:%d: %s", options.host, options.port, ex)
        return 1
    port = anchor.getsockname()[1]
    worker_options = dataclasses.replace(options, port=port)
    _preload(options)
    children: dict[int, int] = {}  # pid -> index
    stopping = False
    exit_code = EXIT_OK
    crashes: list[float] = []

    def spawn(index: int) -> None:
        # Blocked across fork() so the child never runs the master's handler; run_worker unblocks them once its
        # own handlers are in place (a signal that arrived meanwhile is delivered then).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if pid == 0:  # the worker
            code = 1
            try:
                anchor.close()
                sock = bind_socket(worker_options.host, port)
                code = run_worker(index, worker_options, state, sock)
            except BaseException:
                logger.exception("worker %d crashed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index

    def stop(sig: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            logger.info("signal %d: draining %d workers for up to %.0f s", sig, len(children), options.drain_timeout_s)
        stopping = True
        state.start_draining()
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _log_listening(options.host, port, options.workers)
    for index in range(options.workers):
        spawn(index)
    deadline: float | None = None
    try:
        while children:
            if stopping and deadline is None:
                deadline = time.monotonic() + options.drain_timeout_s + 5
            if deadline is not None and time.monotonic() > deadline:
                logger.error("workers still running after the drain timeout; killing them")
                for pid in list(children):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            index = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            _mark_dead(pid)
            state.set_ready(index, False)
            if stopping:
                continue
            if code == EXIT_RECYCLE:
                logger.warning("worker %d (pid %d) recycled (run() calls stuck); starting a new one", index, pid)
                spawn(index)
                continue
            if code == EXIT_SCRIPT:
                logger.error("worker %d (pid %d) cannot load the scoring script; stopping", index, pid)
                exit_code = EXIT_SCRIPT
                stop(signal.SIGTERM, None)
                continue
            now = time.monotonic()
            crashes[:] = [t for t in crashes if now - t < 60] + [now]
            if len(crashes) > RESTART_LIMIT:
                logger.error("workers crashed %d times within a minute; stopping", len(crashes))
                exit_code = 1
                stop(signal.SIGTERM, None)
                continue
            logger.warning("worker %d (pid %d) exited with %d; restarting it", index, pid, code)
            spawn(index)
    finally:
        anchor.close()
    return exit_code


def _preload(options: ServerOptions) -> None:
    """Import the server's own modules once in the master: forked workers share them instead of each importing.

    Only our modules and their libraries (never the user's script): nothing here starts threads or event loops,
    and prometheus-client is imported after ``PROMETHEUS_MULTIPROC_DIR`` is set.
    """
    import importlib

    names = [
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl",
        "serving.protocol",
        "uvloop",
        "serving.app",
        "serving.scoring",
        "serving.swagger",
        "inference_schema.schema_util",
    ]
    if options.frontend:
        names.append("serving.frontend")
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # the worker reports what is really missing


def _mark_dead(pid: int) -> None:
    try:
        from serving.frontend import mark_process_dead
    except ModuleNotFoundError:
        return
    with contextlib.suppress(Exception):
        mark_process_dead(pid)
