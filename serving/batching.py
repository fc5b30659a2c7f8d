"""Adaptive request batching: concurrent ``/score`` requests grouped into one model call, opt-in per deployment.

Switched on by ``ENDPOINTS_MAX_BATCH_SIZE`` above 1 (the deployment's ``request_settings.max_batch_size``), for a
scoring script that defines ``run_batch(items: list) -> list`` beside ``init()``/``run()``, or an MLflow model with
a tabular signature served by its native flavour (no code). Each item is what ``run()`` would receive as its input
argument; ``run_batch`` answers a list of the same length, in the same order.

How a batch forms (one batch runs at a time per worker, in the scorer's run pool):

* the model is idle and requests are lone (the last batches held one request each): the request goes at the end
  of the current pass of the event loop, with whatever arrived in the same pass: no waiting, so a lone client is
  answered as fast as with batching off;
* while a batch runs, new requests queue; when it ends, up to ``max_batch_size`` of them go at once;
* under load (the last batch held several requests) and with fewer queued than the last batch held, the batcher
  waits for more, up to ``ENDPOINTS_MAX_BATCH_WAIT_MS`` counted from the oldest queued request's arrival. A wait
  that ends short lowers the expectation to what came, and a request that finds the model idle for longer than the
  wait counts as lone again, so a lone client after a burst does not wait.

Failures stay per request: when ``run_batch`` raises (or answers a list of another length), every item of that
batch is run again one by one with ``run()``, so a poisoned item fails its own request only (424) and the others
get their answers. A request that times out (408) or whose client leaves is dropped from the queue, or its answer
is discarded when its batch ends; a batch whose requests all left no longer holds the next batch back.

The settings (:class:`contract.serving.BatchSettings`) are the contract the builders (cluster) and the local
supervisor render; the batcher takes its run pool as a plain callable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from contract.serving import (  # noqa: F401  (re-exported: serving.batching is where the batcher's users look)
    BATCH_ENV_VARS,
    DEFAULT_BATCH_WAIT_MS,
    MAX_BATCH_SIZE,
    MAX_BATCH_WAIT_MS,
    BatchSettings,
)
from serving.requestid import current_request_id

logger = logging.getLogger("serving.batching")

# Batch-size histogram buckets (requests per model call).
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0)


class BatchMetrics:
    """Prometheus metrics of the batcher: configured size and wait, observed sizes, waits and fallbacks.

    Observed once per batch (not per request). Created unregistered: :meth:`register` adds them to the production
    layer's registry; in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) they are written to the shared files and
    aggregated with the other metrics either way.
    """

    def __init__(self, settings: BatchSettings) -> None:
        """Create the metrics and set the configured values."""
        from prometheus_client import Counter, Gauge, Histogram

        self.max_size = Gauge(
            "endpoints_batch_max_size",
            "Configured most requests per model call.",
            registry=None,
            multiprocess_mode="max",
        )
        self.max_wait = Gauge(
            "endpoints_batch_max_wait_seconds",
            "Configured longest wait for a batch to fill.",
            registry=None,
            multiprocess_mode="max",
        )
        self.size = Histogram("endpoints_batch_size", "Requests per model call.", buckets=_SIZE_BUCKETS, registry=None)
        self.wait = Histogram(
            "endpoints_batch_wait_seconds",
            "Time the oldest request of a batch waited in the batch queue before its model call started.",
            buckets=_WAIT_BUCKETS,
            registry=None,
        )
        self.fallbacks = Counter(
            "endpoints_batch_fallbacks",
            "Batches whose batch call raised or answered a list of the wrong length; their items ran one by one.",
            registry=None,
        )
        self.max_size.set(settings.max_batch_size)
        self.max_wait.set(settings.max_batch_wait_ms / 1000)

    def register(self, registry: Any) -> None:
        """Add the metrics to ``registry`` (a prometheus-client ``CollectorRegistry``)."""
        for metric in (self.max_size, self.max_wait, self.size, self.wait, self.fallbacks):
            registry.register(metric)


# One item's outcome as the pool thread hands it back: (True, answer) or (False, exception).
Outcome = tuple[bool, Any]


def run_items(
    batch_fn: Callable[[list[Any]], Any],
    item_fn: Callable[[Any], Any],
    items: list[Any],
    request_ids: Sequence[Any],
    on_fallback: Callable[[], Any] | None = None,
) -> list[Outcome]:
    """Run ``batch_fn(items)`` (in a pool thread); when it raises or answers a list of another length, run every item
    alone with ``item_fn`` so that a failing item fails only its own request.

    What the functions print is logged with the first request's id during the batch call and with each request's id
    during the one-by-one fallback.

    Args:
        batch_fn: the batch call (``run_batch``); must return a list (or sequence) as long as ``items``.
        item_fn: the call for one item (``run``).
        items: the items, in arrival order.
        request_ids: the request id of each item (same order).
        on_fallback: called when the fallback runs (default None).
    """
    set_id = current_request_id.set
    if len(items) == 1:  # nothing to isolate: the single call is the fallback
        set_id(request_ids[0])
        try:
            return [(True, item_fn(items[0]))]
        except Exception as ex:
            return [(False, ex)]
    set_id(request_ids[0])
    try:
        answers = batch_fn(items)
        if answers is not None and not isinstance(answers, str | bytes | Mapping) and len(answers) == len(items):
            return [(True, answer) for answer in answers]
        problem = f"run_batch() answered {_describe(answers)} for {len(items)} items"
        logger.error("%s; running each item alone", problem)
    except Exception:
        logger.exception("run_batch() raised for a batch of %d items; running each item alone", len(items))
    if on_fallback is not None:
        on_fallback()
    outcomes: list[Outcome] = []
    for item, request_id in zip(items, request_ids, strict=True):
        set_id(request_id)
        try:
            outcomes.append((True, item_fn(item)))
        except Exception as ex:
            outcomes.append((False, ex))
    return outcomes


def _describe(answers: Any) -> str:
    try:
        return f"{type(answers).__name__} of length {len(answers)}"
    except TypeError:
        return f"a {type(answers).__name__}"


class _Pending:
    """One queued request: its future, its item, its request id and when it was queued."""

    __slots__ = ("future", "item", "queued_at", "request_id")

    def __init__(self, future: asyncio.Future[Any], item: Any, request_id: Any, queued_at: float) -> None:
        self.future = future
        self.item = item
        self.request_id = request_id
        self.queued_at = queued_at


class Batcher:
    """Groups concurrent calls into one call of a batch function, one batch at a time, on one event loop.

    Args:
        execute: runs a batch off the event loop: called with ``items`` and ``request_ids`` keyword arguments, it
            returns an awaitable of one :data:`Outcome` per item (the scorer passes its run pool's ``call`` over
            :func:`run_items`).
        settings: size and wait.
        metrics: where batch sizes and waits are observed (default None: not observed).
        abandon: called with a running batch's call future once every request of that batch has left (timeouts):
            the run pool's ``abandon``, which replaces the thread stuck in it (default None).
    """

    def __init__(
        self,
        execute: Callable[[list[Any], list[Any]], asyncio.Future[list[Outcome]]],
        settings: BatchSettings,
        metrics: BatchMetrics | None = None,
        abandon: Callable[[asyncio.Future[list[Outcome]]], Any] | None = None,
    ) -> None:
        """See the class docstring."""
        self._execute = execute
        self._abandon_call = abandon
        self._call: asyncio.Future[list[Outcome]] | None = None  # the running batch's call
        self.max_size = settings.max_batch_size
        self.max_wait_s = settings.max_batch_wait_ms / 1000
        self.metrics = metrics
        self._queue: collections.deque[_Pending] = collections.deque()
        self._running: list[_Pending] | None = None  # the batch in the pool now
        self._expected = 1  # how many requests the next batch should hold (the last batch's size)
        self._scheduled = False  # a dispatch is due at the end of this loop pass
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_since = 0.0  # when the model last went idle with nothing queued

    @property
    def queued(self) -> int:
        """Requests waiting for a batch now."""
        return len(self._queue)

    async def submit(self, item: Any) -> Any:
        """Queue ``item``; return its answer, or raise what its call raised."""
        loop = self._loop
        if loop is None or asyncio.current_task(loop) is None:
            loop = self._loop = asyncio.get_running_loop()
        now = time.perf_counter()
        if self._running is None and not self._queue and now - self._idle_since > self.max_wait_s:
            self._expected = 1  # the model sat idle longer than the wait: the load is over, do not wait for company
        pending = _Pending(loop.create_future(), item, current_request_id.get(), now)
        self._queue.append(pending)
        if self._running is None and not self._scheduled:
            # The end of this pass of the loop: requests parsed in the same pass join the same batch.
            self._scheduled = True
            loop.call_soon(self._dispatch)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._abandon(pending)
            raise

    def _abandon(self, pending: _Pending) -> None:
        """A request left (timeout, disconnect): out of the queue, and its batch no longer holds the next back."""
        running = self._running
        if running is not None and pending in running:
            if all(p.future.done() for p in running):
                # Every request of the running batch is gone: the next batch may start (on another pool thread
                # when the pool has one; the abandoned call's answers are discarded when it ends).
                self._running = None
                call, self._call = self._call, None
                if call is not None and self._abandon_call is not None:
                    self._abandon_call(call)
                self._dispatch()
            return
        with contextlib.suppress(ValueError):  # already taken into a batch
            self._queue.remove(pending)

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._running is not None:
            return
        queue = self._queue
        while queue and queue[0].future.done():  # cancelled while queued
            queue.popleft()
        if not queue:
            self._idle_since = time.perf_counter()
            return
        now = time.perf_counter()
        count = min(len(queue), self.max_size)
        if count < self._expected and count < self.max_size:
            # Under load and short of the last batch's size: wait for more, up to the wait from the oldest arrival.
            left = queue[0].queued_at + self.max_wait_s - now
            if left > 0:
                if self._timer is None:
                    assert self._loop is not None
                    self._timer = self._loop.call_later(left, self._timed_out)
                return
            self._expected = count  # the wait ran out short: expect what came
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [queue.popleft() for _ in range(count)]
        batch = [p for p in batch if not p.future.done()]
        if not batch:
            self._dispatch()
            return
        self._expected = len(batch)
        self._running = batch
        if self.metrics is not None:
            self.metrics.size.observe(len(batch))
            self.metrics.wait.observe(now - batch[0].queued_at)
        try:
            call = self._execute([p.item for p in batch], [p.request_id for p in batch])
        except BaseException as ex:  # the pool is closed: fail this batch, keep the batcher usable
            self._running = None
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(ex)
            return
        self._call = call
        call.add_done_callback(lambda done: self._finished(batch, done))

    def _timed_out(self) -> None:
        self._timer = None
        self._dispatch()

    def _finished(self, batch: list[_Pending], done: asyncio.Future[list[Outcome]]) -> None:
        if self._running is batch:
            self._running = None
            self._call = None
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        outcomes: list[Outcome] = done.result() if error is None else [(False, error)] * len(batch)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            future = pending.future
            if future.done():
                continue  # the request left; its answer is dropped
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._dispatch()
