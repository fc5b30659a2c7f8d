"""Admission control: at most N requests running, a bounded FIFO of waiters, each waiting a bounded time.

Azure managed online endpoints semantics: ``max_concurrent_requests_per_instance`` running, a request that
cannot start within ``max_queue_wait_ms`` (or finds the queue full) gets 429. Azure rejects with 429 beyond
``2 x max_concurrent_requests_per_instance x instance_count`` requests pending at once ("Too many pending requests"
in its troubleshooting guide), running ones included: so per instance ``limit`` run and at most ``limit`` wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from enum import Enum


class Admit(Enum):
    """Outcome of :meth:`Admission.acquire`."""

    ADMITTED = "admitted"
    QUEUE_FULL = "queue_full"
    WAIT_EXPIRED = "wait_expired"


class Admission:
    """A FIFO counting semaphore with a bounded queue and bounded waits, for one event loop.

    Not thread-safe: every call happens on the serving process's event loop.
    """

    def __init__(self, limit: int, max_waiting: int | None = None) -> None:
        """Allow ``limit`` holders and ``max_waiting`` waiters (default ``limit``: 2 x limit pending, as Azure)."""
        if limit < 1:
            raise ValueError(f"admission limit: got {limit}; must be >= 1")
        self.limit = limit
        self.max_waiting = limit if max_waiting is None else max_waiting
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free slot without waiting (none is free while others wait: FIFO); True when taken."""
        if self.running < self.limit and not self._waiters:
            self.running += 1
            return True
        return False

    async def acquire(self, timeout_s: float) -> Admit:
        """Take a slot, waiting at most ``timeout_s`` seconds in FIFO order.

        Returns ADMITTED (the caller must :meth:`release`), QUEUE_FULL (rejected without waiting) or
        WAIT_EXPIRED (no slot within the time).
        """
        if self.running < self.limit and not self._waiters:
            self.running += 1
            return Admit.ADMITTED
        if len(self._waiters) >= self.max_waiting or timeout_s <= 0:
            return Admit.QUEUE_FULL
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as the wait expired: take it rather than leak it.
                return Admit.ADMITTED
            waiter.cancel()
            self._remove(waiter)
            return Admit.WAIT_EXPIRED
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, but the caller is gone: pass it on
            else:
                waiter.cancel()
                self._remove(waiter)
            raise
        return Admit.ADMITTED

    def release(self) -> None:
        """Give a slot back: hand it straight to the oldest live waiter, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; running stays the same
                return
        self.running -= 1

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
