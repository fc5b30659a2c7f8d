"""The ceiling: a bare ASGI app answering the same prediction, inline, under the same ASGI server (uvicorn).

Run: uvicorn --factory --app-dir bench/inference bare_app:create_app (BENCH_MODEL_DIR names the model folder).

With ``BENCH_CONSTANT=1`` it answers from a cache keyed by the request body (the model predicts once per distinct
body): the HTTP path alone under the same server, the physical limit of any Python server here (``const``).
"""

from __future__ import annotations

import os

import joblib
import numpy as np
import orjson


def create_app():
    model = joblib.load(os.path.join(os.environ["BENCH_MODEL_DIR"], "model.pkl"))
    constant = os.environ.get("BENCH_CONSTANT") == "1"
    answers: dict[bytes, bytes] = {}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/score" and scope["method"] == "POST":
            cached = answers.get(body) if constant else None
            if cached is None:
                prediction = model.predict(np.asarray(orjson.loads(body)["data"])).tolist()
                cached = orjson.dumps(prediction)
                if constant and len(answers) < 1024:
                    answers[body] = cached
            payload, status = cached, 200
        else:
            payload, status = b"Healthy", 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app
