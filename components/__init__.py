"""Pulumi ComponentResources and the pure builders they call.

``components.builders`` imports neither ``pulumi`` nor the network; component modules import ``pulumi``.
Nothing is imported here so that the offline plan can use the builders without the Pulumi SDK.
"""

from __future__ import annotations
