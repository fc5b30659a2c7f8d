"""The ceiling: a bare ASGI app answering the same prediction, inline, under the same ASGI server (uvicorn).

Run: uvicorn --factory --app-dir bench/inference bare_app:create_app (BENCH_MODEL_DIR names the model folder).
"""

from __future__ import annotations

import os

import joblib
import numpy as np
import orjson


def create_app():
    model = joblib.load(os.path.join(os.environ["BENCH_MODEL_DIR"], "model.pkl"))

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
            prediction = model.predict(np.asarray(orjson.loads(body)["data"])).tolist()
            payload, status = orjson.dumps(prediction), 200
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
