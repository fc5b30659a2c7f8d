"""The local router: one endpoint's URL in front of its deployments' serving processes.

It applies the decision of ``endpoints.local.routing`` (the one source of the rules) and moves bytes. It is
written as asyncio Protocols (uvloop when installed) with the ``httptools`` (llhttp) parser on both sides,
not as an ASGI app: the ASGI layer (a task, ``receive``/``send`` coroutines and message dicts per request)
cost as much CPU per request as everything else the router does (``bench/results/router.md``). Requests are
handled in the protocol callbacks themselves; the only timer is one sweeper for all timeouts.

- request and response bodies are streamed, never buffered whole (a request also goes to the mirror: its
  copy is kept up to the body limit); the body limit is enforced by ``Content-Length`` and while streaming
  (413); request framing is kept (length or chunked), responses without a length are re-chunked;
- hop-by-hop headers (RFC 9110 section 7.6.1: ``Connection`` and the fields it lists, ``Keep-Alive``,
  ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) are dropped both ways; every
  other header passes through, ``Authorization`` included: the serving processes check credentials, as
  in the cluster; ``Expect: 100-continue`` is answered by the router once the request is routed;
- ``x-request-id`` passes through, or one is generated so that the live and the mirrored copy share it;
- the response names the deployment that answered in ``azureml-model-deployment``, as Azure's endpoints do;
- mirrored copies go through their own connection pool with bounded concurrency; their answers, errors
  and slowness are dropped, so nothing about the mirror reaches the client;
- keep-alive and pipelined requests are answered in order; a client that is silent too long is closed
  (idle keep-alive), answered 408 (request head or body too slow: slowloris); a deployment that is silent
  too long is answered 504, one that is unreachable or breaks off before its answer 502;
- the hop to the deployments is ``endpoints.local.upstream`` (keep-alive pools of protocol connections).

The routing table is read from a JSON file at start and again on ``SIGHUP`` (``endpoints local update``).
With ``--metrics-port``, Prometheus metrics (requests by deployment, status and how they were routed, durations,
mirror copies) are served there (``endpoints.local.router_metrics``).

The process is put together from one module per concept: ``router_config`` (the config file), ``router_http``
(wire format: limits, hop-by-hop fields, status lines, error answers), ``router_exchange`` (one request on its way
to a deployment, live or mirrored), ``router_client`` (a client's connection), ``router_server`` (listening,
routing decision, pools, mirrors, sweeper, reload), ``upstream`` (connections to the deployments),
``router_metrics`` and ``router_tracing``; this module is the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from contract.serving import DEFAULT_HEADER_TIMEOUT_S
from endpoints.local.router_config import RouterConfig
from endpoints.local.router_server import DEFAULT_BODY_TIMEOUT_S, DEFAULT_KEEPALIVE_TIMEOUT_S, RouterServer
from endpoints.local.router_tracing import router_tracing_from_env
from serving import logformat

logger = logging.getLogger("endpoints.local.router")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m endpoints.local.router``."""
    parser = argparse.ArgumentParser(prog="python -m endpoints.local.router", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="routing config JSON (reloaded on SIGHUP)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port")
    add = parser.add_argument
    add("--keepalive-timeout", type=float, default=DEFAULT_KEEPALIVE_TIMEOUT_S, help="idle seconds (default 65)")
    add("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_S, help="seconds per request head (default 10)")
    add("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S, help="seconds a body may pause (default 30)")
    add("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port (default: none)")
    return parser


async def _serve(config: RouterConfig, args: argparse.Namespace) -> int:
    server = RouterServer(
        config,
        args.config,
        keepalive_timeout=args.keepalive_timeout,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        tracing=router_tracing_from_env(config.table.endpoint),
    )
    # Metrics first: once the endpoint's port accepts connections (what `local up` waits for), both answer.
    port = args.metrics_port
    try:
        if port is not None:
            server.serve_metrics(args.host, port)
        port = args.port
        await server.start(args.host, port)
    except OSError as e:
        logger.error("cannot listen on %s:%d: %s", args.host, port, e.strerror or e)
        await server.stop(grace_s=0)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    await stop.wait()
    await server.stop(grace_s=5.0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until SIGINT/SIGTERM; exit 2 on a bad config file, 1 when the port cannot be bound."""
    args = build_parser().parse_args(argv)
    handler = logformat.configure(logging.INFO)
    try:
        config = RouterConfig.load(args.config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    handler.setFormatter(logformat.JsonFormatter(endpoint=config.table.endpoint))
    try:
        import uvloop  # about a third less CPU per request than the default loop here
    except ImportError:
        return asyncio.run(_serve(config, args))
    return uvloop.run(_serve(config, args))


if __name__ == "__main__":
    sys.exit(main())
