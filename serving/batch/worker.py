"""The worker process: loads the scoring code once, then scores mini-batches sent by the runner.

Messages (over a ``multiprocessing`` pipe):

* worker -> runner: ``("ready",)`` after ``init()``; ``("init_error", message)``;
  ``("ok", mini_batch, csv_bytes, rows, items, columns, ended)``; ``("error", mini_batch, message, ended)``;
  ``("skipped", mini_batch, ended)`` (not started: the runner is stopping). ``ended`` is ``time.monotonic()``
  when the worker was done with that mini-batch (the clock is system-wide): the next one queued started then,
  however late the runner reads the reply.
* runner -> worker: a list of ``(mini_batch, [paths])``, scored in order (one message carries a worker's
  next mini-batch and those queued behind it), or ``None`` to stop.

Results are turned into CSV bytes here, in parallel, so the runner only appends bytes.
"""

from __future__ import annotations

import csv
import ctypes
import io
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from serving import logformat
from serving.batch.scoring import load_scorer

log = logging.getLogger("serving.batch.worker")
_libc: Any = None


def preload() -> None:
    """Load what every worker needs once, in the runner, so that forked workers inherit it (libc's handle)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            _libc = False  # not Linux


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the runner dies, so a killed runner leaves no scorer behind."""
    preload()
    try:
        if _libc:
            _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except AttributeError:
        pass  # no prctl: the worker exits at the next recv() instead


def encode_result(result: Any, n_files: int) -> tuple[bytes, int, int, list[str] | None]:
    """Turn what ``run()`` returned into CSV bytes.

    Returns:
        (csv bytes, rows written, items returned, DataFrame columns or None).

    Raises:
        TypeError: ``run()`` returned neither a list nor a pandas DataFrame.
    """
    # Only scoring code that imported pandas can return a DataFrame: don't pay its import otherwise.
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(result, pd.DataFrame):
        data = result.to_csv(index=False, header=False, lineterminator="\n").encode()
        return data, len(result), len(result), [str(c) for c in result.columns]
    if isinstance(result, list | tuple):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for item in result:
            if isinstance(item, str):
                # Azure ML writes string results as they are: scoring scripts often return ready "a,b" lines.
                buf.write(item.replace("\r", " ").replace("\n", " ") + "\n")
            elif isinstance(item, list | tuple):
                writer.writerow(item)
            elif isinstance(item, dict):
                writer.writerow(item.values())
            else:
                writer.writerow([item])
        return buf.getvalue().encode(), len(result), len(result), None
    raise TypeError(f"run() returned {type(result).__name__}; expected a list or a pandas DataFrame")


def _localize(paths: list[str], cache: str) -> list[str]:
    """Download remote (fsspec URI) inputs to a local folder: scoring code expects local file paths."""
    if not any("://" in p and not p.startswith("file://") for p in paths):
        return [p[len("file://") :] if p.startswith("file://") else p for p in paths]
    import fsspec

    local = []
    for i, uri in enumerate(paths):
        if "://" not in uri or uri.startswith("file://"):
            local.append(uri.removeprefix("file://"))
            continue
        fs, path = fsspec.core.url_to_fs(uri)
        # One folder per position keeps the file's own name (scoring code often writes it into its rows).
        folder = os.path.join(cache, str(i))
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, os.path.basename(path.rstrip("/")) or "input")
        fs.get_file(path, target)
        local.append(target)
    return local


def worker_main(
    conn: Connection,
    entry_script: str | None,
    model_dir: str | None,
    env: dict[str, str],
    stopping: Any = None,
) -> None:
    """Entry point of a worker process (``multiprocessing.Process`` target).

    ``stopping`` (a ``multiprocessing.Event``, optional): once set, mini-batches queued in the pipe are handed
    back unstarted (``("skipped", mini_batch)``), so a SIGTERM never starts new work.
    """
    _die_with_parent()
    signal.set_wakeup_fd(-1)  # a forked worker must not wake the runner's loop with its own signals
    # The runner owns shutdown: a Ctrl-C or SIGTERM to the process group must not kill half-written work.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.update(env)
    logformat.configure(os.environ.get("ENDPOINTS_BATCH_LOG_LEVEL", "INFO").upper())
    try:
        scorer = load_scorer(entry_script, model_dir)
        scorer.init()
    except BaseException as e:
        log.error("init() failed:\n%s", traceback.format_exc())
        conn.send(("init_error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready",))
    with tempfile.TemporaryDirectory(prefix="batch-inputs-") as cache:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return  # the runner is gone
            if msg is None:
                return
            for mini_batch, paths in msg:
                if stopping is not None and stopping.is_set():
                    reply: tuple[Any, ...] = ("skipped", mini_batch)
                else:
                    try:
                        result = scorer.run(_localize(paths, cache))
                        data, rows, items, columns = encode_result(result, len(paths))
                        reply = ("ok", mini_batch, data, rows, items, columns)
                    except BaseException as e:  # scoring code may raise anything, SystemExit included
                        log.warning("mini-batch %d failed:\n%s", mini_batch, traceback.format_exc())
                        reply = ("error", mini_batch, f"{type(e).__name__}: {e}")
                try:
                    conn.send((*reply, time.monotonic()))
                except (BrokenPipeError, OSError):
                    return
