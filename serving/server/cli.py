"""The command line of the serving process: ``python -m serving`` / ``endpoints serve``."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Sequence

from serving import logformat
from serving.server.options import DEFAULT_HOST, DEFAULT_PORT, options_from
from serving.server.supervisor import serve

# Every module of the serving process logs as "serving.server" (the name its log lines have always carried).
logger = logging.getLogger("serving.server")


def apply_cli_environment(
    entry_script: str | None, model_dir: str | None, environ: dict[str, str] | os._Environ[str] | None = None
) -> None:
    """Set Azure's variables from the CLI as azmlinfsrv does.

    ``AML_APP_ROOT`` defaults to the current directory, ``AZUREML_ENTRY_SCRIPT`` becomes the script's absolute
    path and ``AZUREML_MODEL_DIR`` the model folder's (the scoring script reads it from the environment).
    """
    env = os.environ if environ is None else environ
    env.setdefault("AML_APP_ROOT", os.getcwd())
    if entry_script:
        env["AZUREML_ENTRY_SCRIPT"] = os.path.realpath(entry_script)
    if model_dir:
        env["AZUREML_MODEL_DIR"] = os.path.realpath(model_dir)


def configure_logging(level: str) -> None:
    """Log to stderr as JSON lines (``serving.logformat``), uvicorn's own loggers included."""
    logformat.configure(getattr(logging, level.upper(), logging.INFO))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line (``--entry-script --model-dir --port --host --workers``)."""
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Serve an Azure ML scoring script or an MLflow model over HTTP (azmlinfsrv-compatible).",
    )
    parser.add_argument("--entry-script", "--entry_script", help="scoring script (sets AZUREML_ENTRY_SCRIPT)")
    parser.add_argument(
        "--model-dir", "--model_dir", help="AZUREML_MODEL_DIR, as is (Azure's layout: the model under its name in it)"
    )
    parser.add_argument("--port", type=int, default=None, help=f"TCP port; 0 picks a free one (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface to listen on (default {DEFAULT_HOST})")
    parser.add_argument(
        "--workers", "--worker_count", type=int, default=None, help="worker processes (default WORKER_COUNT or 1)"
    )
    parser.add_argument("--no-frontend", action="store_true", help="serve the scoring app without serving.frontend")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m serving``; returns the exit status."""
    args = parse_args(argv)
    options = options_from(args)
    configure_logging(options.log_level)
    apply_cli_environment(args.entry_script, args.model_dir)
    os.environ["WORKER_COUNT"] = str(options.workers)
    code = serve(options)
    _exit_if_run_threads_stuck(code)
    return code


def _exit_if_run_threads_stuck(code: int, grace_s: float = 1.0) -> None:
    """Exit now when ``run()`` calls outlived the drain timeout: the interpreter would otherwise wait for them."""
    deadline = time.monotonic() + grace_s
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [
        t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if stuck:
        logger.warning("threads still running after the drain timeout (%s); exiting without them", ", ".join(stuck))
        logging.shutdown()
        os._exit(code)
