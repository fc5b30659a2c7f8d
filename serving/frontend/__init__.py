"""Production layer around any ASGI scoring app: auth, admission, timeouts, body limits, readiness, metrics.

``build_frontend(app, FrontendSettings.from_env(), is_ready)`` returns the wrapped ASGI app. Pure ASGI (no
framework), so it adds little to each request; see ``docs/frontend.md`` for the HTTP contract.
"""

from __future__ import annotations

from serving.frontend.app import Frontend, build_frontend
from serving.frontend.auth import mint_aml_token
from serving.frontend.metrics import mark_process_dead
from serving.frontend.settings import ENV_VARS, FrontendSettings, FrontendSettingsError

__all__ = [
    "ENV_VARS",
    "Frontend",
    "FrontendSettings",
    "FrontendSettingsError",
    "build_frontend",
    "mark_process_dead",
    "mint_aml_token",
]
