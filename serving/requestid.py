"""Request ids for responses that arrive without one: UUID-4-shaped, cheap enough to make per request."""

from __future__ import annotations

import itertools
import os
import random
from contextvars import ContextVar

# The id of the request being scored, for the lines the scoring script prints (serving.userlog): set by the scoring
# app in the request's task, and by the run() thread pool in its thread for each call (context variables do not
# follow work into other threads by themselves).
current_request_id: ContextVar[bytes | None] = ContextVar("endpoints_current_request_id", default=None)

_prefix = ""
_counter = itertools.count()


def _reset() -> None:
    global _prefix
    _prefix = ""  # a forked worker draws its own prefix with its first id


os.register_at_fork(after_in_child=_reset)


def new_request_id() -> str:
    """A UUID-4-shaped id: 80 random bits drawn once per process, then a counter.

    About ten times cheaper than ``str(uuid.uuid4())`` (no system call, no UUID object). Unique within the
    process and, through the random prefix, across processes and restarts; request ids need not be unguessable.
    """
    global _prefix, _counter
    if not _prefix:
        h = f"{random.getrandbits(80):020x}"
        _prefix = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-"
        _counter = itertools.count(random.getrandbits(44))
    return f"{_prefix}{next(_counter) & 0xFFFFFFFFFFFF:012x}"
