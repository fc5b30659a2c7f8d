"""Which environment a stack is, and how strictly the pack enforces there.

Where the pack runs under ``pulumi preview --policy-pack policies/``, the Pulumi CLI starts it with the stack in
``PULUMI_STACK`` and the stack's config as JSON in ``PULUMI_CONFIG`` (the same variables a Pulumi program gets).
The environment is, in order:

1. stack config ``ml-endpoints:environment`` (``dev``, ``staging`` or ``prod``);
2. the stack name's last segment (``acme/ml-endpoints/prod`` -> ``prod``) when it is one of those;
3. ``prod`` otherwise: a stack the pack cannot classify gets the strict rules rather than the lax ones.

The enforcement level is stack config ``ml-endpoints:policyEnforcement`` (``advisory``/``mandatory``) when set,
else advisory in dev and mandatory in staging and prod. A ``--policy-pack-config`` file still overrides both per
policy (CrossGuard applies it after the pack's defaults).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.rules.common import ENVIRONMENTS, Environment

CONFIG_NAMESPACE = "ml-endpoints"
ENVIRONMENT_KEY = f"{CONFIG_NAMESPACE}:environment"
ENFORCEMENT_KEY = f"{CONFIG_NAMESPACE}:policyEnforcement"
PRIVATE_GATEWAY_KEY = f"{CONFIG_NAMESPACE}:privateGateway"
POOL_LABEL_KEY = f"{CONFIG_NAMESPACE}:poolLabel"
DEFAULT_POOL_LABEL = "ml-endpoints.io/pool"
LEVELS = ("advisory", "mandatory")
# Same default as the stack config key ml-endpoints:privateGateway (namespace/name).
DEFAULT_PRIVATE_GATEWAY = "gateway-system/private"
DEFAULT_LEVELS: dict[str, str] = {"dev": "advisory", "staging": "mandatory", "prod": "mandatory"}


@dataclass(frozen=True)
class StackPolicySettings:
    """The environment of a stack and the enforcement level the pack applies to it."""

    stack: str
    environment: Environment
    level: str
    private_gateways: tuple[str, ...]
    pool_label: str = DEFAULT_POOL_LABEL

    def policy_config(self) -> dict[str, Any]:
        """The config every policy of the pack receives (see ``policies.rules.registry.CONFIG_SCHEMA_PROPERTIES``)."""
        return {
            "environment": self.environment,
            "privateGateways": list(self.private_gateways),
            "gpuPoolLabel": self.pool_label,
        }


def _config_value(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    if isinstance(value, str):
        # PULUMI_CONFIG carries every value as a string; structured values are JSON inside it.
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, (list, dict)) else value
    return value


def settings_for(stack: str | None, config: Mapping[str, Any] | None = None) -> StackPolicySettings:
    """Work out the environment and enforcement level of ``stack`` from its name and config.

    Args:
        stack: stack name, possibly fully qualified (``org/project/name``); None when unknown.
        config: the stack's config with ``namespace:key`` keys (as in ``PULUMI_CONFIG``). Defaults to empty.

    Raises:
        ValueError: ``ml-endpoints:environment`` or ``ml-endpoints:policyEnforcement`` holds an unknown value.
    """
    config = config or {}
    name = (stack or "").rsplit("/", 1)[-1]
    configured = _config_value(config, ENVIRONMENT_KEY)
    if configured is not None:
        if configured not in ENVIRONMENTS:
            raise ValueError(
                f"stack {name!r} config {ENVIRONMENT_KEY}: got {configured!r}; "
                f"expected one of {', '.join(ENVIRONMENTS)}"
            )
        environment: Environment = configured
    elif name in ENVIRONMENTS:
        environment = name
    else:
        environment = "prod"
    level = _config_value(config, ENFORCEMENT_KEY) or DEFAULT_LEVELS[environment]
    if level not in LEVELS:
        raise ValueError(f"stack {name!r} config {ENFORCEMENT_KEY}: got {level!r}; expected one of {', '.join(LEVELS)}")
    gateway = _config_value(config, PRIVATE_GATEWAY_KEY)
    gateways = (str(gateway),) if gateway else (DEFAULT_PRIVATE_GATEWAY,)
    pool_label = str(_config_value(config, POOL_LABEL_KEY) or DEFAULT_POOL_LABEL)
    return StackPolicySettings(
        stack=name, environment=environment, level=str(level), private_gateways=gateways, pool_label=pool_label
    )


def settings_from_environ(environ: Mapping[str, str]) -> StackPolicySettings:
    """Settings for the stack the Pulumi CLI runs the pack for (``PULUMI_STACK``, ``PULUMI_CONFIG``)."""
    raw = environ.get("PULUMI_CONFIG") or "{}"
    try:
        config = json.loads(raw)
    except ValueError:
        config = {}
    return settings_for(environ.get("PULUMI_STACK"), config if isinstance(config, dict) else {})
