"""A small but real ASGI scoring app (Starlette) for the production-layer tests, wrapped by the frontend.

``POST /score`` takes JSON ``{"sleep": s, "block": s, "fail": bool}``: ``sleep`` awaits, ``block`` sleeps in a
worker thread (like a synchronous ``run()``: not cancellable), ``fail`` answers 424 as the scoring app does
for a ``run()`` exception. The answer reports the body length and SHA-256 the app received. Non-JSON bodies
are scored as raw bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from serving.frontend import FrontendSettings, build_frontend


async def liveness(request: Request) -> Response:
    return PlainTextResponse("Healthy")


async def score(request: Request) -> Response:
    body = await request.body()
    rid = request.headers.get("x-request-id", "")
    try:
        params = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        params = {}
    if not isinstance(params, dict):
        params = {}
    if params.get("sleep"):
        await asyncio.sleep(float(params["sleep"]))
    if params.get("block"):
        await run_in_threadpool(time.sleep, float(params["block"]))
    if params.get("fail"):
        return JSONResponse({"error": "run() failed"}, status_code=424, headers={"x-request-id": rid})
    return JSONResponse(
        {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(), "method": request.method},
        headers={"x-request-id": rid},
    )


async def swagger(request: Request) -> Response:
    return JSONResponse({"swagger": "2.0"})


def create_toy_app() -> Starlette:
    """The scoring app alone (no frontend)."""
    return Starlette(
        routes=[
            Route("/", liveness, methods=["GET", "HEAD"]),
            Route("/score", score, methods=["GET", "POST", "OPTIONS"]),
            Route("/swagger.json", swagger, methods=["GET"]),
        ]
    )


def create_app():  # uvicorn --factory entry point for the multi-worker test
    """The toy app wrapped by the frontend, settings from the environment; ready once started."""
    settings = FrontendSettings.from_env()
    workers = int(os.environ.get("WORKER_COUNT", "1"))
    return build_frontend(create_toy_app(), settings.for_worker(0, workers) if workers > 1 else settings, lambda: True)
