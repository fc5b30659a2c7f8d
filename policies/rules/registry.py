"""Rule records and the adapters between the plain checks and CrossGuard's validator signatures."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.rules.common import (
    ENVIRONMENTS,
    JOB_TOKEN,
    Context,
    Environment,
    ObjectCheck,
    Violation,
    embedded_jobs,
    type_token,
)

CONFIG_MAP_TOKEN = "kubernetes:core/v1:ConfigMap"
StackCheck = Callable[[Sequence[Mapping[str, Any]], Context], list[Violation]]
ReportViolation = Callable[..., None]

# The policy config every rule accepts (CrossGuard `configSchema`); __main__.py fills it per stack.
CONFIG_SCHEMA_PROPERTIES: dict[str, dict[str, Any]] = {
    "environment": {
        "type": "string",
        "enum": list(ENVIRONMENTS),
        "default": "dev",
        "description": "Stack environment; prod raises the replica floor, requires digests and private routes.",
    },
    "privateGateways": {
        "type": "array",
        "items": {"type": "string"},
        "default": ["private"],
        "description": "Names of the Gateways that are private.",
    },
    "gpuPoolLabel": {
        "type": "string",
        "default": "ml-endpoints.io/pool",
        "description": "Node label key that selects a GPU node pool.",
    },
}


def context_from_config(config: Mapping[str, Any] | None) -> Context:
    """Build a Context from a policy's config (keys of CONFIG_SCHEMA_PROPERTIES); missing keys take defaults.

    Raises:
        ValueError: ``environment`` is not one of dev, staging, prod.
    """
    config = config or {}
    environment = str(config.get("environment", "dev"))
    if environment not in ENVIRONMENTS:
        raise ValueError(f"policy config: environment: got {environment!r}; expected one of {', '.join(ENVIRONMENTS)}")
    env: Environment = environment
    gateways = config.get("privateGateways")
    return Context(
        environment=env,
        private_gateways=tuple(str(g) for g in gateways) if gateways is not None else ("private",),
        gpu_pool_label=str(config.get("gpuPoolLabel", "ml-endpoints.io/pool")),
    )


@dataclass(frozen=True)
class ResourceRule:
    """A rule over one object, applied to the listed Pulumi type tokens."""

    name: str
    description: str
    types: frozenset[str]
    check: ObjectCheck

    def applies_to(self, obj: Mapping[str, Any]) -> bool:
        """True when ``obj``'s type token is one this rule checks."""
        return type_token(obj) in self.types


@dataclass(frozen=True)
class StackRule:
    """A rule over every object of the stack together (presence and cross-object rules)."""

    name: str
    description: str
    check: StackCheck


def _as_object(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Give CrossGuard props an apiVersion and kind (taken from the type token when absent).

    The props stay lazy (pulumi-policy's unknown-checking proxy), so values unknown during preview are
    only touched by the rules that read them.
    """
    _, api_version, kind = resource_type.split(":", 2)
    if api_version.startswith("core/"):
        api_version = api_version[len("core/") :]
    return ChainMap(props, {"apiVersion": api_version, "kind": kind})  # type: ignore[arg-type]


def run_resource_rule(rule: ResourceRule, args: Any, report_violation: ReportViolation) -> None:
    """Run ``rule`` on a CrossGuard ``ResourceValidationArgs``, reporting each violation's message.

    A batch-template ConfigMap is also checked through the Job template it carries, by the rules over Jobs.
    """
    objects: list[Mapping[str, Any]] = []
    if args.resource_type in rule.types:
        objects.append(_as_object(args.resource_type, args.props))
    if args.resource_type == CONFIG_MAP_TOKEN and JOB_TOKEN in rule.types:
        objects += embedded_jobs(_as_object(args.resource_type, args.props))
    if not objects:
        return
    ctx = context_from_config(args.get_config())
    for obj in objects:
        for violation in rule.check(obj, ctx):
            report_violation(violation.message)


def run_stack_rule(rule: StackRule, args: Any, report_violation: ReportViolation) -> None:
    """Run ``rule`` on a CrossGuard ``StackValidationArgs``, reporting each violation with its resource's URN."""
    objects: list[Mapping[str, Any]] = []
    urns: dict[tuple[str, str, str], str] = {}
    for resource in args.resources:
        if not resource.resource_type.startswith("kubernetes:") or resource.resource_type.count(":") != 2:
            continue  # providers, components and other packages carry no Kubernetes object
        obj = _as_object(resource.resource_type, resource.props)
        objects.append(obj)
        metadata = obj.get("metadata") or {}
        key = (str(obj.get("kind", "")), str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        urns[key] = resource.urn
    for violation in rule.check(objects, context_from_config(args.get_config())):
        urn = urns.get((violation.kind, violation.namespace, violation.name))
        if urn is None:
            report_violation(violation.message)
        else:
            report_violation(violation.message, urn)


Validator = Callable[[Any, ReportViolation], None]


def resource_validator(rule: ResourceRule) -> Validator:
    """The CrossGuard resource validator of ``rule`` (runs it through :func:`run_resource_rule`)."""

    def validate(args: Any, report_violation: ReportViolation) -> None:
        run_resource_rule(rule, args, report_violation)

    validate.__doc__ = f"CrossGuard validator of ``{rule.name}``."
    return validate


def stack_validator(rule: StackRule) -> Validator:
    """The CrossGuard stack validator of ``rule`` (runs it through :func:`run_stack_rule`)."""

    def validate(args: Any, report_violation: ReportViolation) -> None:
        run_stack_rule(rule, args, report_violation)

    validate.__doc__ = f"CrossGuard stack validator of ``{rule.name}``."
    return validate
