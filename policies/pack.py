"""The CrossGuard policy objects of the pack (constructing them starts nothing; ``__main__.py`` serves them)."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from policies.enforcement import StackPolicySettings
from policies.rules import RESOURCE_RULES, STACK_RULES, STACK_VALIDATORS, VALIDATORS
from policies.rules.registry import CONFIG_SCHEMA_PROPERTIES

PACK_NAME = "ml-endpoints"


def _schema() -> PolicyConfigSchema:
    return PolicyConfigSchema(properties={k: dict(v) for k, v in CONFIG_SCHEMA_PROPERTIES.items()})


def build_policies() -> list[Policy]:
    """One ResourceValidationPolicy per object rule and one StackValidationPolicy per stack rule.

    Levels are left unset so the pack-wide level (per stack, see ``policies.enforcement``) applies.
    """
    policies: list[Policy] = [
        ResourceValidationPolicy(
            name=rule.name, description=rule.description, validate=VALIDATORS[rule.name], config_schema=_schema()
        )
        for rule in RESOURCE_RULES
    ]
    policies.extend(
        StackValidationPolicy(
            name=rule.name, description=rule.description, validate=STACK_VALIDATORS[rule.name], config_schema=_schema()
        )
        for rule in STACK_RULES
    )
    return policies


def enforcement_level(settings: StackPolicySettings) -> EnforcementLevel:
    """The CrossGuard level for a stack's settings."""
    return EnforcementLevel.MANDATORY if settings.level == "mandatory" else EnforcementLevel.ADVISORY


def initial_config(settings: StackPolicySettings, policies: list[Policy]) -> dict[str, dict[str, object]]:
    """Per-policy config telling every rule the stack's environment and private gateways, at the stack's level.

    The level is repeated per policy: the engine configures each policy from this initial config, and a config
    without ``enforcementLevel`` reaches it as the protocol's zero value, advisory, which would override the pack's
    level (seen with the real Pulumi engine: prod's mandatory rules were reported as advisory).
    """
    level = enforcement_level(settings)
    return {policy.name: {"enforcementLevel": level, **settings.policy_config()} for policy in policies}
