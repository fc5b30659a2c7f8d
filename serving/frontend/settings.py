"""Settings of the production layer: the serving contract's :class:`contract.serving.FrontendSettings`.

Local mode and the Kubernetes Deployment builder render exactly the variables listed in ``ENV_VARS`` (from the same
class); the serving process reads them once at start with :meth:`FrontendSettings.from_env`.
"""

from __future__ import annotations

from contract.serving import ENV_VARS, AuthMode, DataCollectorSettings, FrontendSettings, FrontendSettingsError

__all__ = ["ENV_VARS", "AuthMode", "DataCollectorSettings", "FrontendSettings", "FrontendSettingsError"]
