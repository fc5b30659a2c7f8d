"""The production layer in front of a custom container (bring your own container, Triton): a sidecar proxy.

Azure authenticates every request to an online endpoint before it reaches the deployment, whatever the container
runs. A custom container knows nothing of the endpoint's keys or tokens, so on the cluster its pod gets this proxy
as a sidecar: the Service sends traffic to the proxy, which runs the same production layer as the serving image
(:mod:`serving.frontend`: key / ``aml_token`` / ``aad_token`` auth, request timeouts, body limits, ``/metrics``,
request ids) and forwards what it admits to the container on 127.0.0.1, without the ``Authorization`` header (the
endpoint's credential is not the container's business).

``python -m serving.auth_proxy --port 5001 --upstream-port 8000 --readiness-path /v2/health/ready``

- ``GET /`` (the pod's liveness through the proxy) answers 200 from the proxy itself; the container's own
  liveness route is probed by Kubernetes directly.
- ``GET /ready`` is 200 while the container's readiness route answers 2xx (polled once a second).
- Every other request is forwarded as it came (method, path, query, body, headers but the hop-by-hop ones and
  ``Authorization``); an unreachable container gives 502 ``{"error": "custom container unavailable"}``, one that
  does not answer within the request timeout 504 ``{"error": "custom container timed out"}``.

Settings come from the same ``ENDPOINTS_*`` environment variables as the serving process (docs/frontend.md).

Local mode starts the container itself: ``--upstream-command '["podman", "run", ...]'`` (a JSON list) runs that
command as a child, stops it (SIGTERM, then SIGKILL after 20 s) when the proxy stops, and stops the proxy
(exit status 3) when the child exits on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from serving.frontend import FrontendSettings, build_frontend

log = logging.getLogger("serving.auth_proxy")

# Headers that describe one hop, not the message (RFC 9110 section 7.6.1), plus the endpoint's credential.
_DROPPED_REQUEST = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"authorization",
    }
)
_DROPPED_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "server",
        "date",
        "x-request-id",
        "x-ms-request-id",
    }
)
READY_POLL_S = 1.0


class Upstream:
    """The custom container on 127.0.0.1: its readiness (polled) and the forwarding ASGI app.

    Args:
        port: The container's scoring port.
        readiness_path: The container's readiness route (polled every :data:`READY_POLL_S` seconds).
        readiness_port: Port of the readiness route (default ``port``).
        timeout_s: Longest wait for the container's answer (the frontend's request timeout bounds it too).
    """

    def __init__(self, port: int, readiness_path: str, readiness_port: int | None = None, timeout_s: float = 300):
        self.base = f"http://127.0.0.1:{port}"
        self.ready_url = f"http://127.0.0.1:{readiness_port or port}{readiness_path}"
        self.timeout_s = timeout_s
        self._ready = False
        self._stop = threading.Event()
        self._client: httpx.AsyncClient | None = None

    def is_ready(self) -> bool:
        """Whether the container's readiness route answered 2xx at the last poll."""
        return self._ready

    def start_polling(self) -> threading.Thread:
        """Poll the readiness route in a daemon thread until :meth:`stop`."""

        def poll() -> None:
            with httpx.Client(timeout=2.0) as client:
                while not self._stop.is_set():
                    try:
                        ready = client.get(self.ready_url).is_success
                    except httpx.HTTPError:
                        ready = False
                    if ready != self._ready:
                        log.info("custom container %s", "ready" if ready else "not ready")
                    self._ready = ready
                    self._stop.wait(READY_POLL_S)

        thread = threading.Thread(target=poll, name="readiness", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI: answer ``GET /`` (alive), forward everything else to the container."""
        if scope["type"] != "http":
            return
        if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            await _answer(send, 200, {"status": "alive"})
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base, timeout=self.timeout_s)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _DROPPED_REQUEST]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        url = httpx.URL(self.base).copy_with(raw_path=raw_path + (b"?" + query if query else b""))
        request = self._client.build_request(scope["method"], url, headers=headers, content=bytes(body))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            await _answer(send, 504, {"error": "custom container timed out"})
            return
        except httpx.HTTPError:
            await _answer(send, 502, {"error": "custom container unavailable"})
            return
        try:
            out = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.multi_items()
                if k.lower() not in _DROPPED_RESPONSE
            ]
            # The frontend's request id (it put one on the request), so that the answer and the access log agree.
            rid = next((v for k, v in scope["headers"] if k.lower() == b"x-request-id"), b"")
            if rid:
                out += [(b"x-request-id", rid), (b"x-ms-request-id", rid)]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _answer(send: Any, status: int, payload: dict[str, str]) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m serving.auth_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="Address to listen on (default 0.0.0.0).")
    parser.add_argument("--port", type=int, default=5001, help="Port to listen on (default 5001).")
    parser.add_argument("--upstream-port", type=int, required=True, help="The container's scoring port.")
    parser.add_argument("--readiness-path", default="/", help="The container's readiness route (default /).")
    parser.add_argument("--readiness-port", type=int, default=None, help="Its port (default --upstream-port).")
    parser.add_argument(
        "--upstream-command", default=None, help="JSON list: a command to run the container as a child (local mode)."
    )
    parser.add_argument(
        "--upstream-stop-command",
        default=None,
        help="JSON list: a command that stops the container (default: SIGTERM to the child).",
    )
    return parser.parse_args(argv)


def _upstream_command(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{option}: got {text!r}; expected a JSON list of strings")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy until SIGTERM/SIGINT (then drain: /ready 503, in-flight requests finish)."""
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        command = _upstream_command(args.upstream_command, "--upstream-command")
        stop_command = _upstream_command(args.upstream_stop_command, "--upstream-stop-command")
        settings = FrontendSettings.from_env()
        upstream = Upstream(
            args.upstream_port, args.readiness_path, args.readiness_port, timeout_s=settings.request_timeout_ms / 1000
        )
        frontend = build_frontend(upstream, settings, upstream.is_ready)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            frontend.begin_drain()
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()  # the drain is the handling: exit 0, not "killed by SIGTERM"

    config = uvicorn.Config(
        frontend,
        host=args.host,
        port=args.port,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=max(1, round(settings.drain_timeout_s)),
    )
    server = Server(config)
    child: subprocess.Popen[bytes] | None = None
    exit_code = 0
    if command is not None:
        try:
            child = subprocess.Popen(command)
        except OSError as e:
            print(f"error: --upstream-command: cannot run {command[0]!r}: {e}", file=sys.stderr)
            return 2

        def watch(proc: subprocess.Popen[bytes]) -> None:
            nonlocal exit_code
            status = proc.wait()
            if not server.should_exit:
                print(f"error: the container command exited with status {status}", file=sys.stderr, flush=True)
                exit_code = 3
                frontend.begin_drain()
                server.should_exit = True

        threading.Thread(target=watch, args=(child,), name="upstream-command", daemon=True).start()
    upstream.start_polling()
    print(f"auth proxy on {args.host}:{args.port} -> 127.0.0.1:{args.upstream_port}", file=sys.stderr, flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(server.serve())
    finally:
        upstream.stop()
        if child is not None and child.poll() is None:
            server.should_exit = True  # the watcher sees an exit it asked for
            if stop_command is not None:
                # A container's PID 1 may ignore SIGTERM: its engine stops it (and the child, `podman run`, ends).
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    subprocess.run(stop_command, timeout=30, check=False, capture_output=True)
            child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
