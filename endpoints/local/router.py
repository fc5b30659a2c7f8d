"""The local router: one endpoint's URL in front of its deployments' serving processes (raw ASGI).

It applies the decision of ``endpoints.local.routing`` and moves bytes:

- request bodies over 256 KiB and all response bodies are streamed, never buffered whole; smaller request
  bodies and those chosen for mirroring (both copies need the body) are read whole, up to the body limit;
- hop-by-hop headers (RFC 9110 section 7.6.1: ``Connection`` and the fields it lists, ``Keep-Alive``,
  ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) are dropped both ways; every
  other header passes through, ``Authorization`` included: the serving processes check credentials, as
  in the cluster;
- ``x-request-id`` passes through, or one is generated so that the live and the mirrored copy share it;
- the response names the deployment that answered in ``azureml-model-deployment``, as Azure's endpoints do;
- mirrored copies go through their own connection pool with bounded concurrency; their answers, errors
  and slowness are dropped, so nothing about the mirror reaches the client;
- the hop to the deployments uses ``endpoints.local.upstream`` (keep-alive pools on asyncio streams and
  httptools), about 15x cheaper in CPU per request than httpx on these machines (numbers in that module).

The routing table is read from a JSON file at start and again on ``SIGHUP`` (``endpoints local update``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from endpoints.local.routing import PIN_HEADER, Router, RoutingTable
from endpoints.local.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

logger = logging.getLogger("endpoints.local.router")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0
MIRROR_CONCURRENCY = 32
SMALL_BODY_BYTES = 256 * 1024  # read whole below this (bounded); stream above it
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


@dataclass
class RouterConfig:
    """Everything the router needs (the JSON file written by the local supervisor).

    Attributes:
        table: Routing rules.
        upstreams: Base URL per deployment (``http://127.0.0.1:PORT``).
        timeouts_s: Seconds to wait for a deployment's answer (default 10); it enforces its own
            ``request_timeout_ms`` first, so this only catches a hung process.
        max_body_bytes: Largest request body accepted (default 64 MiB, the serving layer's default).
    """

    table: RoutingTable
    upstreams: dict[str, str]
    timeouts_s: dict[str, float] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "table": self.table.to_dict(),
            "upstreams": self.upstreams,
            "timeouts_s": self.timeouts_s,
            "max_body_bytes": self.max_body_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterConfig:
        """Inverse of ``to_dict``.

        Raises:
            ValueError: a routing rule is broken, or a deployment has no upstream URL.
        """
        table = RoutingTable.from_dict(data["table"])
        upstreams = {str(k): str(v) for k, v in data["upstreams"].items()}
        missing = sorted(set(table.deployments) - set(upstreams))
        if missing:
            raise ValueError(f"upstreams: no URL for deployment(s) {', '.join(missing)}")
        return cls(
            table=table,
            upstreams=upstreams,
            timeouts_s={str(k): float(v) for k, v in (data.get("timeouts_s") or {}).items()},
            max_body_bytes=int(data.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
        )

    @classmethod
    def load(cls, path: Path) -> RouterConfig:
        """Read a config file.

        Raises:
            ValueError: the file is not valid JSON or breaks a rule; the message names the file.
        """
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


def _json_response(status: int, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": message}).encode()
    return status, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())], body


def _hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> set[bytes]:
    drop = {h.encode() for h in HOP_BY_HOP}
    for name, value in headers:
        if name.lower() == b"connection":
            drop.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return drop


class RouterApp:
    """ASGI application of the local router.

    Args:
        config: Initial routing config.
        config_path: File re-read on ``SIGHUP`` (default ``None``: no reloading).
    """

    def __init__(self, config: RouterConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.router = Router(config.table)
        self._pools: dict[str, UpstreamPool] = {}
        self._mirror_pools: dict[str, UpstreamPool] = {}
        self._mirror_slots = asyncio.Semaphore(MIRROR_CONCURRENCY)
        self._mirror_tasks: set[asyncio.Task[None]] = set()
        self.mirror_sent = 0
        self.mirror_dropped = 0

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
                if _origin(config.upstreams.get(name, "")) != (pools[name].host, pools[name].port):
                    stale = pools.pop(name)
                    asyncio.get_running_loop().create_task(stale.aclose())
        logger.info("routing config reloaded: traffic %s, mirror %s", config.table.traffic, config.table.mirror_traffic)

    async def startup(self) -> None:
        """Reload the config on SIGHUP (connection pools open lazily)."""
        if self.config_path is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def shutdown(self) -> None:
        """Drop pending mirror copies and close the pools."""
        for task in list(self._mirror_tasks):
            task.cancel()
        if self._mirror_tasks:
            await asyncio.gather(*self._mirror_tasks, return_exceptions=True)
        for pools in (self._pools, self._mirror_pools):
            for pool in pools.values():
                await pool.aclose()
            pools.clear()

    def _pool(self, name: str, *, mirror: bool = False) -> UpstreamPool:
        pools = self._mirror_pools if mirror else self._pools
        pool = pools.get(name)
        if pool is None:
            host, port = _origin(self.config.upstreams[name])
            pool = pools[name] = UpstreamPool(host, port, max_idle=MIRROR_CONCURRENCY if mirror else 64)
        return pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        pin = None
        request_id = None
        length = None
        chunked = False
        for name, value in raw_headers:
            lname = name.lower()
            if lname == PIN_HEADER.encode():
                pin = value.decode("latin-1").strip() or None
            elif lname == b"x-request-id":
                request_id = value
            elif lname == b"content-length":
                length = value
            elif lname == b"transfer-encoding":
                chunked = True
        decision = self.router.decide(pin)
        if decision.target is None:
            await self._reply(send, *_json_response(decision.status, decision.error or "not found"))
            return
        config = self.config
        limit = config.max_body_bytes
        if length is not None:
            try:
                too_large = int(length) > limit
            except ValueError:
                await self._reply(send, *_json_response(400, f"invalid content-length {length.decode('latin-1')!r}"))
                return
            if too_large:
                await self._reply(send, *_json_response(413, f"request body is larger than {limit} bytes"))
                return

        # Host, framing and Expect are the hop's own business: the pool writes them for the upstream connection.
        drop = _hop_by_hop(raw_headers) | {b"host", b"content-length", b"expect"}
        headers = [(n, v) for n, v in raw_headers if n.lower() not in drop]
        if request_id is None:
            request_id = str(uuid.uuid4()).encode()
            headers.append((b"x-request-id", request_id))
        client_addr = scope.get("client")
        if client_addr:
            headers.append((b"x-forwarded-for", client_addr[0].encode()))
        for name, value in raw_headers:
            if name.lower() == b"host":
                headers.append((b"x-forwarded-host", value))
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))

        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        target = decision.target
        timeout = config.timeouts_s.get(target, DEFAULT_TIMEOUT_S)
        method = scope["method"]
        declared = int(length) if length is not None else None

        body: bytes | AsyncIterator[bytes]
        mirror = decision.mirror if decision.mirror in config.upstreams else None
        if (
            mirror is not None
            or (declared is not None and declared <= SMALL_BODY_BYTES)
            or (declared is None and not chunked)
        ):
            # Small bodies (and mirrored ones: both copies need them) are read whole, within the limit; a whole
            # body can be replayed if a kept-alive upstream connection turns out closed.
            try:
                body = await self._read_body(receive, limit)
            except _BodyTooLarge:
                await self._reply(send, *_json_response(413, f"request body is larger than {limit} bytes"))
                return
            except _ClientGone:
                return
        else:
            body = self._stream_body(receive, limit)
        if mirror is not None:
            self._start_mirror(mirror, method, path, headers, body)  # type: ignore[arg-type]
        try:
            response = await self._pool(target).request(method, path, headers, body, timeout, declared)
        except _BodyTooLarge:
            await self._reply(send, *_json_response(413, f"request body is larger than {limit} bytes"))
            return
        except _ClientGone:
            return
        except UpstreamTimeout:
            await self._reply(send, *_json_response(504, f"deployment {target!r} did not answer within {timeout:g} s"))
            return
        except UpstreamError as e:
            logger.warning("deployment %s unreachable: %s", target, e)
            await self._reply(send, *_json_response(502, f"deployment {target!r} is not reachable"))
            return
        try:
            out_drop = _hop_by_hop(response.headers)
            out_headers = [(n, v) for n, v in response.headers if n.lower() not in out_drop]
            out_headers.append((PIN_HEADER.encode(), target.encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
            # A body already read to its end goes out as the last message: one ASGI send (and one socket write)
            # fewer per request, which is most answers (small JSON).
            ended = False
            async for chunk in response.iter_body():
                ended = response.finished
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
                if ended:
                    break
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamError as e:
            # The status line is out; all that is left is to cut the response short.
            logger.warning("deployment %s broke off its response: %s", target, e)
        finally:
            await response.aclose()

    @staticmethod
    async def _reply(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    async def _stream_body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                raise _BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    @classmethod
    async def _read_body(cls, receive: Receive, limit: int) -> bytes:
        return b"".join([chunk async for chunk in cls._stream_body(receive, limit)])

    def _start_mirror(
        self, deployment: str, method: str, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        if self._mirror_slots.locked():
            # Mirror saturated (slow or hung): drop this copy rather than hold memory or slow anyone.
            self.mirror_dropped += 1
            return
        task = asyncio.create_task(self._mirror(deployment, method, path, headers, body))
        self._mirror_tasks.add(task)
        task.add_done_callback(self._mirror_tasks.discard)

    async def _mirror(
        self, deployment: str, method: str, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        timeout = self.config.timeouts_s.get(deployment, DEFAULT_TIMEOUT_S)
        async with self._mirror_slots:
            self.mirror_sent += 1
            try:
                pool = self._pool(deployment, mirror=True)
                response = await pool.request(method, path, headers, body, timeout)
                try:
                    async for _chunk in response.iter_body():
                        pass  # read to the end so that the connection can be reused
                finally:
                    await response.aclose()
                if response.status >= 500:
                    logger.info("mirror %s answered %d (discarded)", deployment, response.status)
            except UpstreamError as e:
                logger.info("mirror %s failed (discarded): %s", deployment, type(e).__name__)


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, like the serving processes' logs."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name}
        return json.dumps({**line, "msg": record.getMessage()})


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m endpoints.local.router``."""
    parser = argparse.ArgumentParser(prog="python -m endpoints.local.router", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="routing config JSON (reloaded on SIGHUP)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port")
    parser.add_argument("--keepalive-timeout", type=float, default=65.0, help="seconds (default 65)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until SIGINT/SIGTERM; exit 2 on a bad config file."""
    import uvicorn

    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        config = RouterConfig.load(args.config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = RouterApp(config, args.config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            lifespan="on",
            access_log=False,
            proxy_headers=False,  # the router is the first hop: it sets x-forwarded-* itself
            log_level="warning",
            timeout_keep_alive=int(args.keepalive_timeout),
            timeout_graceful_shutdown=5,
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
