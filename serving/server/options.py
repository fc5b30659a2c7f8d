"""How the serving process serves (:class:`ServerOptions`, from the command line and the environment) and how it
ends (exit statuses, stop signals): what the CLI, the supervisor and the workers agree on."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal

from contract import serving as contract

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SCRIPT = 3  # Azure (gunicorn) treats 3 as a boot error: the scoring script cannot be served
# Too many run() calls stuck past the request timeout (serving.run_pool.RunPool): the worker drained and exited so
# that a fresh one replaces it (the master restarts it at once, not counted as a crash; a single-worker process
# exits with it and its supervisor, the kubelet or `endpoints local up`, starts it again).
EXIT_RECYCLE = 4
DEFAULT_PORT = 5001  # azmlinfsrv's default
DEFAULT_HOST = "0.0.0.0"  # a container listens on every interface
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How the process serves.

    Attributes:
        host: interface to listen on (default ``0.0.0.0``).
        port: TCP port; 0 picks a free one, logged as ``listening on http://HOST:PORT`` (default 5001).
        workers: worker processes sharing the port (default ``WORKER_COUNT`` or 1).
        drain_timeout_s: SIGTERM: time given to in-flight requests (default ``ENDPOINTS_DRAIN_TIMEOUT_S`` or 30).
        keepalive_timeout_s: idle keep-alive timeout (default ``ENDPOINTS_KEEPALIVE_TIMEOUT_S`` or 65).
        header_timeout_s: time a request head may take to arrive, and a new connection to send one (default
            ``ENDPOINTS_HEADER_TIMEOUT_S`` or 10; see ``serving.protocol``).
        frontend: wrap the scoring app with ``serving.frontend`` (default True).
        log_level: root log level (default ``AZUREML_LOG_LEVEL`` or INFO).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    drain_timeout_s: float = 30.0
    keepalive_timeout_s: float = 65.0
    header_timeout_s: float = 10.0
    frontend: bool = True
    log_level: str = "INFO"


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name}: got {raw!r}; expected a number") from None


def options_from(args: argparse.Namespace) -> ServerOptions:
    """Combine the parsed arguments with the environment (arguments win)."""
    workers = args.workers if args.workers is not None else int(_env_number("WORKER_COUNT", 1))
    if workers < 1:
        raise SystemExit(f"--workers: got {workers}; expected 1 or more")
    port = args.port if args.port is not None else int(_env_number("SERVER_PORT", DEFAULT_PORT))
    if not 0 <= port <= 65535:
        raise SystemExit(f"--port: got {port}; expected 0..65535")
    header_timeout_s = _env_number("ENDPOINTS_HEADER_TIMEOUT_S", contract.DEFAULT_HEADER_TIMEOUT_S)
    if not 0 < header_timeout_s <= 3600:
        raise SystemExit(
            f"environment variable ENDPOINTS_HEADER_TIMEOUT_S: got {header_timeout_s:g}; expected 0 < s <= 3600"
        )
    return ServerOptions(
        host=args.host,
        port=port,
        workers=workers,
        drain_timeout_s=_env_number("ENDPOINTS_DRAIN_TIMEOUT_S", float(contract.DEFAULT_DRAIN_TIMEOUT_S)),
        keepalive_timeout_s=_env_number("ENDPOINTS_KEEPALIVE_TIMEOUT_S", float(contract.DEFAULT_KEEPALIVE_TIMEOUT_S)),
        header_timeout_s=header_timeout_s,
        frontend=not args.no_frontend,
        log_level=os.environ.get("AZUREML_LOG_LEVEL", "INFO"),
    )
