"""Readiness shared by the workers of one serving process (``/ready``; the master's view when it forks them)."""

from __future__ import annotations

import multiprocessing.sharedctypes


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
