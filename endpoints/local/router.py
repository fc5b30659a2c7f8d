"""The local router: one endpoint's URL in front of its deployments' serving processes (raw ASGI + httpx).

It applies the decision of ``endpoints.local.routing`` and moves bytes:

- request and response bodies are streamed, never buffered whole, except a request chosen for mirroring
  (both copies need the body), which is read up to the body limit;
- hop-by-hop headers (RFC 9110 section 7.6.1: ``Connection`` and the fields it lists, ``Keep-Alive``,
  ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) are dropped both ways; every
  other header passes through, ``Authorization`` included: the serving processes check credentials, as
  in the cluster;
- ``x-request-id`` passes through, or one is generated so that the live and the mirrored copy share it;
- the response names the deployment that answered in ``azureml-model-deployment``, as Azure's endpoints do;
- mirrored copies go through their own connection pool with bounded concurrency; their answers, errors
  and slowness are dropped, so nothing about the mirror reaches the client.

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

import httpx

from endpoints.local.routing import PIN_HEADER, Router, RoutingTable

logger = logging.getLogger("endpoints.local.router")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0
MIRROR_CONCURRENCY = 32
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
        self._client: httpx.AsyncClient | None = None
        self._mirror_client: httpx.AsyncClient | None = None
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
        logger.info("routing config reloaded: traffic %s, mirror %s", config.table.traffic, config.table.mirror_traffic)

    async def startup(self) -> None:
        """Open the connection pools; reload on SIGHUP."""
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)
        self._client = httpx.AsyncClient(limits=limits, timeout=DEFAULT_TIMEOUT_S, follow_redirects=False)
        self._mirror_client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=MIRROR_CONCURRENCY, max_keepalive_connections=MIRROR_CONCURRENCY),
            timeout=DEFAULT_TIMEOUT_S,
            follow_redirects=False,
        )
        if self.config_path is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def shutdown(self) -> None:
        """Drop pending mirror copies and close the pools."""
        for task in list(self._mirror_tasks):
            task.cancel()
        if self._mirror_tasks:
            await asyncio.gather(*self._mirror_tasks, return_exceptions=True)
        for client in (self._client, self._mirror_client):
            if client is not None:
                await client.aclose()

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
        if self._client is None:  # served without lifespan (some test servers): open pools lazily
            await self.startup()
        raw_headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        pin = None
        request_id = None
        length = None
        for name, value in raw_headers:
            lname = name.lower()
            if lname == PIN_HEADER.encode():
                pin = value.decode("latin-1").strip() or None
            elif lname == b"x-request-id":
                request_id = value
            elif lname == b"content-length":
                length = value
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

        drop = _hop_by_hop(raw_headers) | {b"host"}
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
        url = config.upstreams[target] + path.decode("latin-1")
        timeout = config.timeouts_s.get(target, DEFAULT_TIMEOUT_S)
        method = scope["method"]

        body: bytes | AsyncIterator[bytes] | None
        mirror = decision.mirror if decision.mirror in config.upstreams else None
        if mirror is not None:
            try:
                body = await self._read_body(receive, limit)
            except _BodyTooLarge:
                await self._reply(send, *_json_response(413, f"request body is larger than {limit} bytes"))
                return
            except _ClientGone:
                return
        else:
            body = self._stream_body(receive, limit)

        assert self._client is not None
        request = self._client.build_request(
            method, url, headers=headers, content=body, timeout=httpx.Timeout(timeout, connect=2.0)
        )
        if mirror is not None:
            self._start_mirror(mirror, method, path.decode("latin-1"), headers, body)  # type: ignore[arg-type]
        try:
            response = await self._client.send(request, stream=True)
        except _BodyTooLarge:
            await self._reply(send, *_json_response(413, f"request body is larger than {limit} bytes"))
            return
        except _ClientGone:
            return
        except httpx.TimeoutException:
            await self._reply(send, *_json_response(504, f"deployment {target!r} did not answer within {timeout:g} s"))
            return
        except httpx.HTTPError as e:
            if isinstance(e.__cause__ or e.__context__, _BodyTooLarge):
                await self._reply(send, *_json_response(413, f"request body is larger than {limit} bytes"))
                return
            logger.warning("deployment %s unreachable: %s", target, e)
            await self._reply(send, *_json_response(502, f"deployment {target!r} is not reachable"))
            return
        try:
            out_drop = _hop_by_hop(response.headers.raw)
            out_headers = [(n, v) for n, v in response.headers.raw if n.lower() not in out_drop]
            out_headers.append((PIN_HEADER.encode(), target.encode()))
            await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as e:
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
        self, deployment: str, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        if self._mirror_slots.locked():
            # Mirror saturated (slow or hung): drop this copy rather than hold memory or slow anyone.
            self.mirror_dropped += 1
            return
        task = asyncio.create_task(self._mirror(deployment, method, path, headers, body))
        self._mirror_tasks.add(task)
        task.add_done_callback(self._mirror_tasks.discard)

    async def _mirror(
        self, deployment: str, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        assert self._mirror_client is not None
        url = self.config.upstreams[deployment] + path
        timeout = self.config.timeouts_s.get(deployment, DEFAULT_TIMEOUT_S)
        async with self._mirror_slots:
            self.mirror_sent += 1
            try:
                response = await self._mirror_client.request(
                    method, url, headers=headers, content=body, timeout=httpx.Timeout(timeout, connect=2.0)
                )
                if response.status_code >= 500:
                    logger.info("mirror %s answered %d (discarded)", deployment, response.status_code)
            except httpx.HTTPError as e:
                logger.info("mirror %s failed (discarded): %s", deployment, type(e).__name__)


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
    # httpx logs every request at INFO; one line per proxied request is the serving processes' job.
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
            log_level="warning",
            timeout_keep_alive=int(args.keepalive_timeout),
            timeout_graceful_shutdown=5,
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
