"""Apps for the production-layer benchmark (``uvicorn --factory apps:<name>``).

``bare``: a minimal pure-ASGI scoring app answering a fixed JSON prediction; the worst case for the
frontend's relative cost, since the app itself costs almost nothing. ``fronted``: the same app wrapped by
``serving.frontend`` with settings from the ``ENDPOINTS_*`` environment variables.
"""

from __future__ import annotations

from typing import Any

from serving.frontend import FrontendSettings, build_frontend

_BODY = b'{"predictions": [1, 0, 1]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def _score_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as a scoring app does
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def bare() -> Any:
    """The app alone."""
    return _score_app


def fronted() -> Any:
    """The app behind the production layer (settings from the environment)."""
    return build_frontend(_score_app, FrontendSettings.from_env(), lambda: True)
