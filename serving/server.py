"""The serving process: ``python -m serving`` / ``endpoints serve``.

One process per worker (``--workers`` / ``WORKER_COUNT``), each with its own listening socket on the same port
(``SO_REUSEPORT``: the kernel spreads connections over the workers, no accept lock). With more than one worker
a master forks them, watches them and forwards SIGTERM. Each worker runs uvicorn on uvloop and httptools with
``TCP_NODELAY`` set on every accepted socket (a response written as headers then body would otherwise wait for
the client's delayed ACK, ~40 ms), serves ``GET /`` at once and runs ``init()`` in a thread; it becomes ready
when ``init()`` returns. ``init()`` failing or ``run`` missing: the cause is logged and the process exits 3.

Readiness is shared through a small shared-memory array (one flag per worker and a draining flag): ``/ready``
is 200 only once every worker finished ``init()`` and until SIGTERM. On SIGTERM the worker stops admitting
scoring requests, closes its listener and gives in-flight requests ``ENDPOINTS_DRAIN_TIMEOUT_S`` (default 30 s,
below Kubernetes' default ``terminationGracePeriodSeconds`` of 30 s plus the pre-stop time) to finish, then
exits 0.

The production layer (``serving.frontend``: auth, limits, ``/ready``, ``/metrics``, access logs) wraps the
scoring app unless ``--no-frontend`` is given (used by the benchmark to measure the scoring path alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing.sharedctypes
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from contract import serving as contract
from serving import logformat

logger = logging.getLogger("serving.server")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SCRIPT = 3  # Azure (gunicorn) treats 3 as a boot error: the scoring script cannot be served
# Too many run() calls stuck past the request timeout (serving.scoring.RunPool): the worker drained and exited so
# that a fresh one replaces it (the master restarts it at once, not counted as a crash; a single-worker process
# exits with it and its supervisor, the kubelet or `endpoints local up`, starts it again).
EXIT_RECYCLE = 4
DEFAULT_PORT = 5001  # azmlinfsrv's default
DEFAULT_HOST = "0.0.0.0"  # a container listens on every interface
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
RESTART_LIMIT = 5  # worker crashes (after ready) tolerated per minute before the master gives up


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


class ReadyState:
    """Readiness shared by the workers (fork-inherited shared memory): one flag per worker plus draining."""

    def __init__(self, workers: int) -> None:
        """Allocate the flags for ``workers`` workers (all not ready, not draining)."""
        self.workers = workers
        self._flags = multiprocessing.sharedctypes.RawArray("b", workers + 1)

    def set_ready(self, index: int, ready: bool) -> None:
        """Mark worker ``index`` as having finished ``init()`` (or not, after a restart)."""
        self._flags[index] = 1 if ready else 0

    def start_draining(self) -> None:
        """Mark the whole instance as draining: not ready from now on."""
        self._flags[self.workers] = 1

    @property
    def draining(self) -> bool:
        """True once SIGTERM arrived."""
        return bool(self._flags[self.workers])

    def is_ready(self) -> bool:
        """True when every worker finished ``init()`` and the instance is not draining."""
        flags = self._flags
        return not flags[self.workers] and all(flags[i] for i in range(self.workers))


# --------------------------------------------------------------------------------------------------------------------
# Sockets and the HTTP protocol
# --------------------------------------------------------------------------------------------------------------------


def bind_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and listening unless ``listen`` is False)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _protocol_class(header_timeout_s: float = 10.0) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (h11 where httptools is missing) setting ``TCP_NODELAY`` per connection.

    The httptools protocol also gets the request-head limits and the header timeout of ``serving.protocol``
    (h11 bounds the head by ``h11_max_incomplete_event_size`` instead).
    """
    base: type[asyncio.Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        from serving.protocol import limited_protocol

        base = limited_protocol(HttpToolsProtocol, header_timeout_s)
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol

    class NoDelayProtocol(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(_JoiningTransport(transport))

    return NoDelayProtocol


class _JoiningTransport:
    """A transport that sends a response's head and body in one system call instead of two.

    uvicorn writes the status line and headers on ``http.response.start`` and the body on ``http.response.body``;
    with ``TCP_NODELAY`` each write is its own send and its own segment, and over loopback or a pod network the
    send is a large part of a small response's cost. A small write is held until the next write on the connection
    (sent joined with it, at once) or the end of the current pass of the event loop, whichever comes first, so
    nothing waits longer than that pass. Writes over ``HOLD_MAX`` bytes go straight out (after what is held), so
    flow control sees every large body as before. Everything else is the real transport's.
    """

    HOLD_MAX = 16384

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        """Wrap ``transport`` (on the running loop)."""
        self._transport: Any = transport
        self._loop = asyncio.get_running_loop()
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        """Send ``data``, or hold it (small, nothing held yet) until the next write or the end of this loop pass."""
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= self.HOLD_MAX:
                self._transport.write(held + data)
            else:  # not worth copying a large body to save one call
                self._transport.write(held)
                self._transport.write(data)
        elif len(data) <= self.HOLD_MAX and not self._transport.is_closing():
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        """Send every chunk (joined)."""
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        """Send what is held, then EOF."""
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Send what is held, then close."""
        self._flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        """Bytes buffered, held ones included."""
        return int(self._transport.get_write_buffer_size()) + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _max_head_bytes() -> int:
    from serving.protocol import MAX_HEAD_BYTES

    return MAX_HEAD_BYTES


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.new_event_loop


# --------------------------------------------------------------------------------------------------------------------
# A worker
# --------------------------------------------------------------------------------------------------------------------


def run_worker(index: int, options: ServerOptions, state: ReadyState, sock: socket.socket) -> int:
    """Serve on ``sock`` until SIGTERM/SIGINT; return the exit status (0, or 3 when the script cannot load).

    Args:
        index: this worker's index (its readiness flag).
        options: server options.
        state: shared readiness.
        sock: the bound, listening socket.
    """
    # Until uvicorn takes over the signals (and after it restores them and re-raises what it caught), SIGTERM and
    # SIGINT are only recorded: a signal during start-up means "stop once started", and the exit status stays 0.
    early_signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early_signals.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the master around fork()

    from serving.scorers import make_scorer
    from serving.scoring import ScoringSettings, ScriptError
    from serving.userlog import capture_user_output

    user_output = capture_user_output()  # what init() and run() print becomes JSON log lines with the request id

    try:
        settings = ScoringSettings.from_env()
        scorer = make_scorer(settings)
    except (ScriptError, ValueError) as ex:
        logger.error("cannot serve: %s", ex)
        return EXIT_SCRIPT
    scorer.on_run_threads_exhausted = lambda: recycle()  # defined below, once the server exists
    # The script's imports and init() (usually most of the cold start: numpy, scikit-learn, the model file) start
    # now, in parallel with importing the HTTP stack and the production layer below.
    loading = _Loading(scorer.load)

    import uvicorn

    from serving.app import build_app

    app: Any = build_app(scorer, settings, state.is_ready)
    frontend: Any = None
    if options.frontend:
        frontend = _wrap_frontend(app, state.is_ready, index, options.workers)
        if frontend is not None:
            app = frontend
            if scorer.batch_metrics is not None:  # batch sizes and waits on the same /metrics
                scorer.batch_metrics.register(frontend.metrics.registry)

    if frontend is None:
        app = _drain_guard(app, state)  # the production layer does the same itself, without one more wrapper
    exit_code = EXIT_OK

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Draining starts before uvicorn closes the listener: /ready turns 503, new scoring requests on open
            # connections get 503, in-flight requests run to completion (bounded by timeout_graceful_shutdown).
            state.start_draining()
            if frontend is not None:
                frontend.begin_drain()
            super().handle_exit(sig, frame)
            # uvicorn >= 0.29 re-raises the captured signal once shut down, so the process would die of SIGTERM
            # (status -15) after a clean drain; the drain is the handling, so exit with our own status instead.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    config = uvicorn.Config(
        app,
        http=_protocol_class(options.header_timeout_s),
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=max(1, round(options.keepalive_timeout_s)),
        timeout_graceful_shutdown=max(1, round(options.drain_timeout_s)),
        backlog=2048,
        h11_max_incomplete_event_size=_max_head_bytes(),
    )
    server = Server(config)

    def recycle() -> None:
        # Too many run() threads stuck (RunPool.abandon, on the loop): this worker stops taking requests, lets the
        # in-flight ones finish (bounded by the drain timeout) and exits EXIT_RECYCLE; the stuck threads die with it.
        nonlocal exit_code
        if exit_code == EXIT_OK:
            exit_code = EXIT_RECYCLE
        state.set_ready(index, False)
        if frontend is not None:
            frontend.begin_drain()
        server.should_exit = True

    async def load() -> None:
        nonlocal exit_code
        try:
            await loading.wait()
        except asyncio.CancelledError:
            raise  # shutting down before init() finished: not a script failure
        except ScriptError as ex:
            logger.error("worker %d (pid %d): %s; exiting with status 3", index, os.getpid(), ex, exc_info=ex)
            exit_code = EXIT_SCRIPT
            server.should_exit = True
            return
        except BaseException as ex:
            logger.error(
                "worker %d (pid %d): loading failed: %r; exiting with status 3", index, os.getpid(), ex, exc_info=ex
            )
            exit_code = EXIT_SCRIPT
            server.should_exit = True
            return
        state.set_ready(index, True)
        logger.info("worker %d (pid %d) ready in %.3f s", index, os.getpid(), loading.elapsed_s)

    async def main() -> None:
        if early_signals:
            server.handle_exit(early_signals[0], None)
        loader = asyncio.ensure_future(load())
        try:
            await server.serve(sockets=[sock])
        finally:
            if not loader.done():
                loader.cancel()
                with contextlib.suppress(BaseException):
                    await loader

    runner = asyncio.Runner(loop_factory=_loop_factory())
    try:
        runner.run(main())
    finally:
        try:
            runner.close()  # requests cut short while closing add access-log lines: flush after
            scorer.close()
        finally:
            # Forked workers end with os._exit (no atexit, no interpreter flush): write what is left now.
            if frontend is not None:
                frontend.close()  # access-log lines and the data collector's queue
            user_output.flush_all()
    return exit_code


class _Loading:
    """``load()`` running in a daemon thread from construction on; :meth:`wait` awaits it on the event loop.

    A daemon thread (not the loop's default executor): SIGTERM during a long ``init()`` must not wait for it.
    """

    def __init__(self, load: Callable[[], None]) -> None:
        """Start ``load`` now."""
        self._started = time.perf_counter()
        self.elapsed_s = 0.0
        self._error: BaseException | None = None
        self._done = False
        self._lock = threading.Lock()
        self._notify: Callable[[], None] | None = None
        threading.Thread(target=self._run, args=(load,), name="init", daemon=True).start()

    def _run(self, load: Callable[[], None]) -> None:
        try:
            load()
        except BaseException as ex:  # raised again by wait() on the loop
            self._error = ex
        self.elapsed_s = time.perf_counter() - self._started
        with self._lock:
            self._done = True
            notify = self._notify
        if notify is not None:
            notify()

    async def wait(self) -> None:
        """Return once ``load()`` returned; raise what it raised."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_resolve, finished)

        with self._lock:
            if not self._done:
                self._notify = notify
            else:
                finished.set_result(None)
        await finished
        if self._error is not None:
            raise self._error


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _drain_guard(app: Any, state: ReadyState) -> Any:
    """Answer 503 (not uvicorn's 500) to requests cancelled because the drain timeout ran out."""
    import asyncio

    body = b'{"error":"the instance shut down before the request finished; retry"}'

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if scope["type"] != "http" or started or not state.draining:
                raise
            logger.warning("request %s %s cut short by the drain timeout", scope["method"], scope["path"])
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"), (b"retry-after", b"1")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    return guarded


def _wrap_frontend(app: Any, is_ready: Callable[[], bool], index: int, workers: int) -> Any:
    """``serving.frontend.build_frontend`` around ``app`` (None while that module does not exist)."""
    try:
        from serving.frontend import FrontendSettings, build_frontend
    except ModuleNotFoundError as ex:
        if ex.name not in ("serving.frontend",):
            raise
        return None
    settings = FrontendSettings.from_env().for_worker(index, workers)
    return build_frontend(app, settings, is_ready)


# --------------------------------------------------------------------------------------------------------------------
# The process: one worker in-process, or a master forking several
# --------------------------------------------------------------------------------------------------------------------


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
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
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


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name}: got {raw!r}; expected a number") from None


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
