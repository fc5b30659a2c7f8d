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

Its modules, one concept each; imports run one way, ``cli`` -> ``supervisor`` -> ``worker`` -> ``transport``,
``readiness``, ``options``:

* ``options``: :class:`ServerOptions` from the command line and the environment; exit statuses, stop signals;
* ``readiness``: :class:`ReadyState`, the readiness flags the workers share;
* ``transport``: listening sockets, uvicorn's HTTP protocol with ``TCP_NODELAY`` and the head limits, the
  joining transport, the event loop;
* ``worker``: one worker: load the scorer, serve it with uvicorn, drain on SIGTERM;
* ``supervisor``: the process: one worker in-process, or a master forking, watching and restarting several;
* ``cli``: ``python -m serving`` / ``endpoints serve``: arguments, logging, exit.
"""

from __future__ import annotations
