"""One worker of the serving process: load the scorer (``init()`` in a thread), serve it with uvicorn on the
listening socket, become ready when ``init()`` returns, drain on SIGTERM, recycle when ``run()`` threads are stuck."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from serving.server.options import EXIT_OK, EXIT_RECYCLE, EXIT_SCRIPT, STOP_SIGNALS, ServerOptions
from serving.server.readiness import ReadyState
from serving.server.transport import loop_factory, max_head_bytes, protocol_class

# Every module of the serving process logs as "serving.server" (the name its log lines have always carried).
logger = logging.getLogger("serving.server")


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
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the master around fork()

    from contract.serving import ScoringSettings
    from serving.errors import ScriptError
    from serving.scorers import make_scorer
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
        http=protocol_class(options.header_timeout_s),
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=max(1, round(options.keepalive_timeout_s)),
        timeout_graceful_shutdown=max(1, round(options.drain_timeout_s)),
        backlog=2048,
        h11_max_incomplete_event_size=max_head_bytes(),
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

    runner = asyncio.Runner(loop_factory=loop_factory())
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
