"""Core of the toolkit: Azure ML CLI v2 compatible specs, the instance type catalog, the CLI and local mode.

Imports neither ``pulumi`` nor the serving runtime, so every other part (components, policies, serving,
local mode) can depend on it.
"""

from __future__ import annotations

__version__ = "0.1.0"
