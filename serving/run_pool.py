"""The run pool: a bounded pool of daemon threads running synchronous ``run()`` calls for one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from serving.requestid import current_request_id

# The logger the scoring path has always logged under (log lines keep their "logger" field).
logger = logging.getLogger("serving.scoring")


class RunPool:
    """A bounded pool of daemon threads running synchronous ``run()`` calls for one event loop.

    Lighter than ``loop.run_in_executor`` (no ``concurrent.futures.Future`` chained to an asyncio one): a queue
    in, ``call_soon_threadsafe`` out. Daemon threads, so a ``run()`` stuck past the drain timeout does not keep the
    process alive.

    Results of short calls are handed back in batches: while more calls are queued, a thread keeps the results of
    the calls it finished for up to ``batch_s`` and then hands them all to the loop in one callback. Every hand-back
    wakes the event loop, which then competes with the pool thread for the GIL; under load that costs two to four
    context switches per request (on these VMs about as much CPU as a small model's ``predict``). Batching lets the
    loop sleep while the thread works through the queue. Results are held only while calls are short (a moving
    average of their wall time under ``batch_s / 2``) and more calls are queued; a batch goes back once ``batch_s``
    has passed since its first call started, or as soon as the queue is empty. A finished result therefore waits at
    most ``batch_s`` plus one short call; when calls turn slow, results go back one by one as before (only a
    surprise slow call can delay the short results held just before it).

    With one thread, calls made during one pass of the event loop go to the thread together at the end of the pass
    (one wake-up; the thread starts when the loop is done instead of taking the GIL from it mid-pass).

    Timed-out calls (the awaiting task cancelled, as the production layer does at the request deadline; see
    :meth:`run`): a call still queued is skipped, never started. A call already running cannot be stopped (Python
    threads cannot be killed), so its thread is *abandoned*: a replacement thread starts at once and serves the
    queue, and the abandoned thread ends when its ``run()`` returns. At most ``max_stuck`` threads (default:
    ``size``) may be abandoned at once; one more calls ``on_exhausted`` (once) instead of starting a thread, and
    the serving process recycles the worker then, as gunicorn does when a worker passes its timeout.
    """

    def __init__(
        self,
        size: int,
        name: str = "run",
        batch_s: float = 0.005,
        max_stuck: int | None = None,
        on_exhausted: Callable[[], None] | None = None,
    ) -> None:
        """Start ``size`` threads named ``{name}_{i}``.

        Args:
            size: threads running calls (at least 1).
            name: thread name prefix (default ``run``).
            batch_s: longest time a finished result is held for a batched hand-back (default 5 ms).
            max_stuck: abandoned threads allowed at once before ``on_exhausted`` (default ``size``).
            on_exhausted: called once, on the event loop, when one more call times out while running past
                ``max_stuck`` (default: only an error is logged).
        """
        import queue
        import threading

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch_s = batch_s
        self._single = size <= 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitting: list[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], Any, bytes | None]
        ] = []
        self._name = name
        self._lock = threading.Lock()  # guards the slots (which call each thread runs, abandoned flags)
        self._slots: list[_Slot] = []
        self._spawned = itertools.count()
        self.max_stuck = max(1, size) if max_stuck is None else max_stuck
        self.stuck = 0  # abandoned threads still running their call
        self.exhausted = False
        self._on_exhausted = on_exhausted
        for _ in range(max(1, size)):
            self._spawn()

    def _spawn(self) -> None:
        import threading

        slot = _Slot()
        self._slots.append(slot)
        slot.thread = threading.Thread(
            target=self._work, args=(slot,), name=f"{self._name}_{next(self._spawned)}", daemon=True
        )
        slot.thread.start()

    def _work(self, slot: _Slot) -> None:
        import queue

        get, get_nowait, empty = self._queue.get, self._queue.get_nowait, queue.Empty
        lock = self._lock
        set_request_id = current_request_id.set
        clock = time.perf_counter
        batch_s = self._batch_s
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        done_loop: asyncio.AbstractEventLoop | None = None
        held_since = 0.0
        # Moving average of call durations; starts high, so the first calls are handed back one by one.
        short_s = batch_s / 2
        typical = batch_s
        while True:
            if done:
                try:
                    calls = get_nowait()
                except empty:  # nothing queued: hand back now, then sleep until the next call
                    _hand_back(done_loop, done)
                    done = []
                    continue
            else:
                calls = get()
            if calls is None:
                _hand_back(done_loop, done)
                return
            # The batch is taken call by call under the lock: when this thread is abandoned (a call timed out while
            # running), abandon() moves the calls not yet started back to the queue for the replacement thread.
            slot.batch, slot.next = calls, 0
            while True:
                with lock:
                    if slot.next >= len(slot.batch):
                        break
                    loop, future, func, kwargs, request_id = slot.batch[slot.next]
                    slot.next += 1
                    if future.cancelled():  # timed out while queued: never started
                        continue
                    slot.future = future
                if done and loop is not done_loop:
                    _hand_back(done_loop, done)
                    done = []
                set_request_id(request_id)  # what the script prints is logged with the request's id
                started = clock()
                try:
                    outcome: tuple[asyncio.Future[Any], Any, BaseException | None] = (future, func(**kwargs), None)
                except BaseException as ex:  # handed to the awaiting coroutine
                    outcome = (future, None, ex)
                ended = clock()
                with lock:
                    slot.future = None
                    abandoned = slot.abandoned
                if abandoned:  # a replacement took this thread's place: hand back what is held, then end
                    _hand_back(done_loop, done)
                    with lock:
                        self.stuck -= 1
                    return
                typical += (ended - started - typical) * 0.2
                if not done:
                    held_since = started
                    done_loop = loop
                done.append(outcome)
                # Hold only while calls are short: a result is never kept waiting behind a slow call.
                if typical >= short_s or ended - held_since >= batch_s:
                    _hand_back(done_loop, done)
                    done = []

    def call(self, func: Callable[..., Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """Run ``func(**kwargs)`` in a pool thread; await the returned future for its result.

        Cancelling the future before a thread takes the call means the call never starts; use :meth:`run` so that a
        call cancelled while running frees its thread's place too.
        """
        # asyncio.get_running_loop() costs a getpid system call in Python 3.11: ask the last loop for its current
        # task instead (none when another loop is running now).
        loop = self._loop
        if loop is None or asyncio.current_task(loop) is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        call = (loop, future, func, kwargs, current_request_id.get())
        if self._single:
            # Calls made in one pass of the loop go to the thread together once the pass is over: one wake-up,
            # and the thread starts when the loop has nothing left to do instead of fighting it for the GIL.
            if not self._submitting:
                self._submitting = []
                loop.call_soon(self._submit)
            self._submitting.append(call)
        else:
            self._queue.put([call])
        return future

    async def run(self, func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """``await call(func, kwargs)``; when the awaiting task is cancelled (timeout), free the call's thread."""
        future = self.call(func, kwargs)
        try:
            return await future
        except asyncio.CancelledError:
            self.abandon(future)
            raise

    def abandon(self, future: asyncio.Future[Any]) -> None:
        """The call of ``future`` was given up: if a thread runs it now, replace that thread (see the class doc)."""
        with self._lock:
            slot = next((s for s in self._slots if s.future is future and not s.abandoned), None)
            if slot is None:
                return  # not started (it never will be) or already finished
            slot.abandoned = True
            self._slots.remove(slot)
            rest = slot.batch[slot.next :]
            slot.batch, slot.next = [], 0
            self.stuck += 1
            replace = self.stuck <= self.max_stuck
        if rest:
            self._queue.put(rest)
        if replace:
            logger.warning(
                "a run() call timed out while running; its thread (%s) is left to finish and a new one serves "
                "(%d stuck of %d allowed)",
                slot.thread.name if slot.thread else "?",
                self.stuck,
                self.max_stuck,
            )
            self._spawn()
            return
        if not self.exhausted:
            self.exhausted = True
            logger.error(
                "%d run() calls are stuck past the request timeout (limit %d); recycling the worker",
                self.stuck,
                self.max_stuck,
            )
            if self._on_exhausted is not None:
                self._on_exhausted()

    def _submit(self) -> None:
        calls, self._submitting = self._submitting, []
        if calls:
            self._queue.put(calls)

    def close(self) -> None:
        """Let the threads end after the calls already queued."""
        with self._lock:
            count = len(self._slots)
        for _ in range(count):
            self._queue.put(None)


class _Slot:
    """One pool thread: the batch it works through and the call it runs now (read and written under the lock)."""

    __slots__ = ("abandoned", "batch", "future", "next", "thread")

    def __init__(self) -> None:
        self.thread: Any = None
        self.batch: list[Any] = []
        self.next = 0
        self.future: asyncio.Future[Any] | None = None
        self.abandoned = False


def _hand_back(
    loop: asyncio.AbstractEventLoop | None, done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
) -> None:
    if loop is not None and done:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_settle, done)


def _settle(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in done:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
