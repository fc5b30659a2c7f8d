"""Every rule of the policy pack, as plain checks over Kubernetes objects (dicts).

``check_objects`` is what the offline plan runs; ``policies/__main__.py`` wraps the same rules for CrossGuard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policies.rules import endpoints, pod_security, workloads
from policies.rules.common import Context, Violation, embedded_jobs
from policies.rules.registry import ResourceRule, StackRule

RESOURCE_RULES: tuple[ResourceRule, ...] = pod_security.RULES + workloads.RULES + endpoints.RULES
STACK_RULES: tuple[StackRule, ...] = workloads.STACK_RULES
VALIDATORS = {**pod_security.VALIDATORS, **workloads.VALIDATORS, **endpoints.VALIDATORS}
STACK_VALIDATORS = dict(workloads.STACK_VALIDATORS)


def check_object(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Run every per-object rule that applies to ``obj`` (and, for a batch-template ConfigMap, every Job rule on the
    Job template it carries: the pods of every job of that deployment)."""
    out: list[Violation] = []
    for rule in RESOURCE_RULES:
        if rule.applies_to(obj):
            out.extend(rule.check(obj, ctx))
    for job in embedded_jobs(obj):
        out.extend(check_object(job, ctx))
    return out


def check_objects(objects: Sequence[Mapping[str, Any]], ctx: Context) -> list[Violation]:
    """Run every per-object rule on each object, then every stack rule on all of them together."""
    out: list[Violation] = []
    for obj in objects:
        out.extend(check_object(obj, ctx))
    for rule in STACK_RULES:
        out.extend(rule.check(objects, ctx))
    return out


__all__ = [
    "RESOURCE_RULES",
    "STACK_RULES",
    "STACK_VALIDATORS",
    "VALIDATORS",
    "Context",
    "Violation",
    "check_object",
    "check_objects",
]
