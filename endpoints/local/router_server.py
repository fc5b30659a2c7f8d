"""The local router process's core: listening socket, routing decision per request, upstream pools, mirror
copies, the one sweeper for every timeout, config reload.

:meth:`RouterServer.route` turns a parsed request head into an :class:`~endpoints.local.router_exchange.Exchange`:
the decision of ``endpoints.local.routing``, the request head for the deployment (hop-by-hop fields dropped,
``x-request-id`` kept or generated, ``x-forwarded-*`` added, framing kept) and, when the table mirrors, the start of
the mirrored copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from contract import serving as _contract
from contract.serving import DEFAULT_HEADER_TIMEOUT_S
from endpoints.local.router_client import ClientConnection
from endpoints.local.router_config import DEFAULT_TIMEOUT_S, RouterConfig
from endpoints.local.router_exchange import Exchange, MirrorCopy
from endpoints.local.router_http import (
    H_CHUNKED,
    H_CONNECTION,
    H_EXPECT,
    H_HOST,
    H_ID,
    H_LENGTH,
    H_PIN,
    H_TRACE,
    NO_BODY_METHODS,
    SPECIAL_REQUEST_HEADERS,
    connection_tokens,
    upstream_origin,
)
from endpoints.local.router_metrics import RouterMetrics
from endpoints.local.router_tracing import RouterTracing
from endpoints.local.routing import Router
from endpoints.local.upstream import UpstreamPool

# One logger for the router process, whichever of its modules writes.
logger = logging.getLogger("endpoints.local.router")

DEFAULT_KEEPALIVE_TIMEOUT_S = float(_contract.DEFAULT_KEEPALIVE_TIMEOUT_S)
DEFAULT_BODY_TIMEOUT_S = 30.0
MIRROR_CONCURRENCY = 32
SWEEP_INTERVAL_S = 0.25  # resolution of every timeout


class RouterServer:
    """The router: listening socket, routing state, upstream pools, the sweeper.

    Args:
        config: Initial routing config.
        config_path: File re-read on ``SIGHUP`` (default ``None``: no reloading).
        keepalive_timeout: Seconds an idle client connection stays open (default 65).
        header_timeout: Seconds a client has to send a whole request head (default 10).
        body_timeout: Seconds a request body may pause (default 30).

    Attributes:
        metrics: Counts of requests and mirror copies (served by ``serve_metrics``).
    """

    def __init__(
        self,
        config: RouterConfig,
        config_path: Path | None = None,
        *,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
        tracing: RouterTracing | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.tracing = tracing
        self.config = config
        self.config_path = config_path
        self.router = Router(config.table)
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.connections: set[ClientConnection] = set()
        self.mirrors: set[MirrorCopy] = set()
        self.metrics = RouterMetrics(mirror_in_flight=lambda: len(self.mirrors))
        self._metrics_server: Any = None
        self._pools: dict[str, UpstreamPool] = {}
        self._mirror_pools: dict[str, UpstreamPool] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        # Generated request ids: UUID-shaped, a random version-4 prefix per process and a counter, unique
        # without costing a uuid4() (about 10 us here) per request. They are ids, not secrets.
        self._id_prefix = str(uuid.uuid4())[:24].encode()
        self._ids = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` and start the sweeper.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await self.loop.create_server(lambda: ClientConnection(self), host, port, backlog=1024)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def serve_metrics(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` (its own thread; see ``endpoints.local.router_metrics``).

        Raises:
            OSError: the address cannot be bound.
        """
        self._metrics_server = self.metrics.serve(host, port)

    def count(self, exchange: Exchange) -> None:
        """Count a request once, when it is over (answered, or the client left: 499 if no answer began)."""
        if not exchange.counted:
            exchange.counted = True
            status = exchange.status or 499
            self.metrics.observe(exchange.target, status, exchange.routed_by, time.perf_counter() - exchange.arrived)
            if exchange.span is not None and self.tracing is not None:
                self.tracing.end(exchange.span, status, exchange.request_id)
                exchange.span = None

    def count_unrouted(self, status: int, began: float | None) -> None:
        """Count a request the router answered before its head was whole (bad, too large or too slow); ``began``:
        when its head began (None: it did not even begin as HTTP, duration 0)."""
        self.metrics.observe("", status, "none", 0.0 if began is None else time.perf_counter() - began)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, let requests in progress finish within ``grace_s`` seconds, then close everything."""
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + grace_s
        while self.loop.time() < deadline:
            for conn in list(self.connections):
                if not conn.queue and conn.parsing is None:
                    conn.close()
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for mirror in list(self.mirrors):
            mirror.drop_upstream()
            mirror.end_span()
        self.mirrors.clear()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # export the spans still batched
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.shutdown)
            self._metrics_server.server_close()
        for pools in (self._pools, self._mirror_pools):
            for pool in pools.values():
                pool.close()
            pools.clear()
        await asyncio.sleep(0)  # let the transports report their close

    def reload(self) -> None:
        """Re-read the config file; on a bad file keep the current rules and log why."""
        if self.config_path is None:
            return
        try:
            config = RouterConfig.load(self.config_path)
        except ValueError as e:
            logger.error("routing config not reloaded, keeping the current one: %s", e)
            return
        self.config = config
        self.router = Router(config.table)
        for pools in (self._pools, self._mirror_pools):
            for name in list(pools):
                if upstream_origin(config.upstreams.get(name, "")) != (pools[name].host, pools[name].port):
                    pools.pop(name).close()  # requests in flight keep their connections to the end
        logger.info("routing config reloaded: traffic %s, mirror %s", config.table.traffic, config.table.mirror_traffic)

    def pool(self, name: str, *, mirror: bool = False) -> UpstreamPool:
        """The connection pool of one deployment (mirror copies have their own)."""
        pools = self._mirror_pools if mirror else self._pools
        pool = pools.get(name)
        if pool is None:
            host, port = upstream_origin(self.config.upstreams[name])
            pool = pools[name] = UpstreamPool(host, port, max_idle=MIRROR_CONCURRENCY if mirror else 64)
        return pool

    def route(self, client: ClientConnection) -> Exchange:
        """Turn a parsed request head into an exchange: the routing decision, the upstream request head."""
        parser = client.parser
        method = parser.get_method()
        keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        pin = request_id = traceparent = length = host = None
        chunked = expect = False
        tokens: set[bytes] | None = None
        kept: list[bytes] = []
        special = SPECIAL_REQUEST_HEADERS
        tracing = self.tracing
        for name, value in client.headers:
            lname = name.lower()
            kind = special.get(lname)
            if kind is None:
                kept += [name, b": ", value, b"\r\n"]
            elif kind == H_PIN:
                pin = value.decode("latin-1").strip() or None
                kept += [name, b": ", value, b"\r\n"]
            elif kind == H_ID:
                request_id = value
                kept += [name, b": ", value, b"\r\n"]
            elif kind == H_TRACE:
                traceparent = value
                if tracing is None:  # else the router's own span's traceparent is sent instead
                    kept += [name, b": ", value, b"\r\n"]
            elif kind == H_LENGTH:
                length = value
            elif kind == H_HOST:
                host = value
            elif kind == H_CONNECTION:
                tokens = connection_tokens(value)
            elif kind == H_CHUNKED:
                chunked = True  # llhttp accepts Transfer-Encoding in a request only with chunked last
            elif kind == H_EXPECT:
                expect = value.lower() == b"100-continue"  # the hop's own business: the router answers it
        if tokens:
            # Fields named by Connection are hop-by-hop too (rare: filter once more).
            kept = []
            passed = (None, H_PIN, H_ID) if tracing is not None else (None, H_PIN, H_ID, H_TRACE)
            for name, value in client.headers:
                lname = name.lower()
                kind = special.get(lname)
                if lname not in tokens and kind in passed:
                    kept += [name, b": ", value, b"\r\n"]

        decision = self.router.decide(pin)
        config = self.config
        target = decision.target
        if target is None:
            exchange = Exchange(client, None, None, method, keep_alive, parser.get_http_version() == "1.1")
            exchange.error = (decision.status, decision.error or "not found")
            exchange.arrived = client.began
            exchange.request_id = request_id
            exchange.traceparent = traceparent
            if pin:
                exchange.routed_by = "pin"
            return exchange
        pool = self.pool(target)
        exchange = Exchange(client, pool, target, method, keep_alive, parser.get_http_version() == "1.1")
        exchange.arrived = client.began
        exchange.traceparent = traceparent
        if pin:
            exchange.routed_by = "pin"
        exchange.timeout = config.timeouts_s.get(target, DEFAULT_TIMEOUT_S)
        exchange.expect_continue = expect
        declared = int(length) if length is not None else None  # llhttp has checked that it is digits
        if declared is not None and declared > config.max_body_bytes:
            exchange.error = (413, f"request body is larger than {config.max_body_bytes} bytes")
            exchange.discarding = True
            exchange.request_id = request_id
            return exchange

        if request_id is None:
            request_id = self.new_request_id()
            kept += [b"x-request-id: ", request_id, b"\r\n"]
        exchange.request_id = request_id
        kept.append(client.forwarded_for)
        if host is not None:
            kept += [b"x-forwarded-host: ", host, b"\r\n"]
        kept.append(b"x-forwarded-proto: http\r\n")
        fields = b"".join(kept)
        own = b""
        if tracing is not None:
            exchange.span, span_traceparent = tracing.start(method, target, exchange.routed_by, traceparent)
            own = b"traceparent: %s\r\n" % span_traceparent
        url = client.url
        if declared is not None:
            framing = b"content-length: %d\r\n" % declared
        elif chunked:
            framing = b"transfer-encoding: chunked\r\n"
            exchange.chunked_in = True
        elif method in NO_BODY_METHODS:
            framing = b""
        else:
            framing = b"content-length: 0\r\n"
        exchange.send(
            b"%s %s HTTP/1.1\r\nhost: %s\r\n%s%s%s\r\n" % (method, url, pool.host_header, fields, own, framing)
        )
        mirror = decision.mirror
        if mirror is not None and mirror in config.upstreams:
            exchange.mirror = mirror
            exchange.mirror_body = []
            # Copies are marked (x-endpoints-mirror) so that the deployment's logs and traces can tell them apart;
            # traceparent and x-request-id pass unchanged: the copy belongs to the same trace and request.
            exchange.mirror_start = b"%s %s HTTP/1.1\r\n%sx-endpoints-mirror: 1\r\n" % (method, url, fields)
        return exchange

    def new_request_id(self) -> bytes:
        """A generated request id (UUID-shaped: this process's random prefix and a counter)."""
        self._ids += 1
        return b"%s%012x" % (self._id_prefix, self._ids)

    def start_mirror(self, live: Exchange, body: bytes) -> None:
        """Send a copy of ``live`` in the background; dropped when ``MIRROR_CONCURRENCY`` copies are in flight."""
        name, start, method = live.mirror or "", live.mirror_start, live.method
        if len(self.mirrors) >= MIRROR_CONCURRENCY:
            # Mirror saturated (slow or hung): drop this copy rather than hold memory or slow anyone.
            RouterMetrics.bump(self.metrics.mirror_dropped, name)
            return
        pool = self.pool(name, mirror=True)
        framing = b"content-length: %d\r\n" % len(body) if body or method not in NO_BODY_METHODS else b""
        span = None
        if self.tracing is not None and live.span is not None:
            span, span_traceparent = self.tracing.start_mirror(live.span, method, name)
            start += b"traceparent: %s\r\n" % span_traceparent
        request = b"".join([start, b"host: ", pool.host_header, b"\r\n", framing, b"\r\n", body])
        copy = MirrorCopy(self, pool, name, request, method == b"HEAD")
        copy.request_id, copy.traceparent, copy.span = live.request_id, live.traceparent, span
        self.mirrors.add(copy)
        RouterMetrics.bump(self.metrics.mirror_sent, name)
        copy.acquire()

    def _sweep(self) -> None:
        now = self.loop.time()
        try:
            for conn in list(self.connections):
                conn.check(now)
            for mirror in list(self.mirrors):
                up = mirror.upstream
                if up is not None and up.waiting and now - up.last_activity > mirror.timeout:
                    up.timed_out(mirror.timeout)
        except Exception:  # a bug here must not stop every timeout for good
            logger.exception("timeout sweep failed")
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)
