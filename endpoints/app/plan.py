"""The offline plan: every object a stack would create, schema-validated and policy-checked, with no cluster and no
Pulumi CLI.

It renders the stack (online and batch endpoints, the stack's Kueue queue, PriorityClasses and batch volume) with the
very builders the components call (``components.builders.stack.render_stack``), validates each object
(``components.k8s_schema.validate_object``: Kubernetes OpenAPI for core kinds, CRD schemas for Gateway API/Kueue/KEDA)
and runs the policy pack's rules (``policies.rules.check_objects``) with the environment and enforcement level the
pack would use for that stack (``policies.enforcement.settings_for``). Secrets are placeholders
(``<secret:primary>``): the plan never holds a key.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.builders.stack import render_stack
from components.builders.stack_config import load_stack_config, settings_from_config
from components.k8s_schema import validate_object, validator_for
from policies.enforcement import settings_for
from policies.rules import check_objects
from policies.rules.common import Context, Violation

CONFIG_PREFIX = "ml-endpoints"
# Below this many objects a second process costs more than it saves.
_PARALLEL_MIN_OBJECTS = 200
_PLACEHOLDER = re.compile(r"^<secret:[A-Za-z0-9._-]+>$")


@dataclass(frozen=True)
class SchemaProblem:
    """An object that the API server would reject."""

    ref: str
    message: str


@dataclass
class StackPlan:
    """What ``pulumi up`` of a stack would create, checked.

    Attributes:
        stack: stack name.
        environment: dev, staging or prod (as the policy pack decides it).
        level: advisory or mandatory: the level every policy violation carries in this stack.
        objects: every rendered object, in creation order, secrets as placeholders.
        schema_problems: objects that fail their schema.
        violations: policy violations.
        scoring_uris: online endpoint name -> scoring URI.
        jobs_uris: batch endpoint name -> jobs URI (``POST`` a job there).
        notes: what the stack does with the specs that a reader may not expect (base images redirected).
    """

    stack: str
    environment: str
    level: str
    objects: list[dict[str, Any]]
    schema_problems: list[SchemaProblem] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    scoring_uris: dict[str, str] = field(default_factory=dict)
    jobs_uris: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        """True when ``pulumi up`` would fail: a schema problem or a mandatory violation."""
        return bool(self.schema_problems) or (self.level == "mandatory" and bool(self.violations))

    def objects_by_kind(self) -> dict[str, int]:
        """Count of objects per kind, sorted by kind."""
        return dict(sorted(Counter(str(o.get("kind")) for o in self.objects).items()))

    def violations_by_level(self) -> dict[str, int]:
        """Count of violations per enforcement level (both levels always present)."""
        counts = {"mandatory": 0, "advisory": 0}
        counts[self.level] += len(self.violations)
        return counts

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no object bodies)."""
        return {
            "stack": self.stack,
            "environment": self.environment,
            "enforcement": self.level,
            "objects": len(self.objects),
            "objectsByKind": self.objects_by_kind(),
            "schemaProblems": [{"object": p.ref, "message": p.message} for p in self.schema_problems],
            "violationsByLevel": self.violations_by_level(),
            "violations": [
                {"policy": v.policy, "level": self.level, "object": v.ref(), "message": v.message}
                for v in self.violations
            ],
            "scoringUris": self.scoring_uris,
            "jobsUris": self.jobs_uris,
            "notes": self.notes,
            "blocked": self.blocked,
        }


def object_ref(obj: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped objects)."""
    metadata = obj.get("metadata") or {}
    parts = [str(obj.get("kind", "")), str(metadata.get("namespace") or ""), str(metadata.get("name") or "")]
    return "/".join(p for p in parts if p)


def redact_secrets(obj: dict[str, Any]) -> dict[str, Any]:
    """Replace every value of a Secret's ``data``/``stringData`` that is not already a placeholder.

    The builders already render placeholders; this is the belt to their braces, so that a builder change can never
    put a key into a plan file or a PR comment.
    """
    if obj.get("kind") != "Secret":
        return obj
    for section in ("data", "stringData"):
        values = obj.get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                if not (isinstance(value, str) and _PLACEHOLDER.match(value)):
                    values[key] = f"<secret:{key}>"
    return obj


def _policy_context(
    stack: str, values: Mapping[str, Any], private_gateway: str, pool_label: str
) -> tuple[Context, str]:
    settings = settings_for(stack, {f"{CONFIG_PREFIX}:{k}": v for k, v in values.items()})
    ctx = Context(
        environment=settings.environment,
        private_gateways=(private_gateway,),
        gpu_pool_label=pool_label,
    )
    return ctx, settings.level


def plan_stack(repo_root: Path, stack: str, *, check: bool = True) -> StackPlan:
    """Render, validate and policy-check ``stacks/Pulumi.<stack>.yaml`` of ``repo_root``.

    Args:
        repo_root: the Pulumi project folder.
        stack: the stack name.
        check: validate and run the policy rules (default True); False renders only (the other side of a diff).

    Raises:
        SpecError: the stack file, its config or an endpoint folder is invalid (the message names file and field).
    """
    values = load_stack_config(repo_root, stack)
    source = str(repo_root / "stacks" / f"Pulumi.{stack}.yaml")
    settings = settings_from_config(values, source)
    rendered = render_stack(settings, repo_root)
    objects = [redact_secrets(o) for o in rendered.objects]
    ctx, level = _policy_context(stack, values, settings.private_gateway, settings.pool_label)
    return StackPlan(
        stack=stack,
        environment=ctx.environment,
        level=level,
        objects=objects,
        schema_problems=validate_all(objects) if check else [],
        violations=check_objects(objects, ctx) if check else [],
        scoring_uris=dict(rendered.scoring_uris),
        jobs_uris=dict(rendered.jobs_uris),
        notes=list(rendered.notes),
    )


# --- schema validation ---------------------------------------------------------------------------------------------


def _validate_chunk(chunk: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, str, list[str]]]:
    return [(i, object_ref(o), validate_object(o)) for i, o in chunk]


def _workers(n_objects: int) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_objects < _PARALLEL_MIN_OBJECTS or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(cpus, 4))


def validate_all(objects: list[dict[str, Any]]) -> list[SchemaProblem]:
    """Schema-validate every object, in object order.

    Validation is the plan's main cost (~2 ms per object with compiled validators). For large stacks the work is
    split across forked processes: the parent compiles each kind's validator first, so the children inherit them
    instead of compiling their own.
    """
    indexed = list(enumerate(objects))
    workers = _workers(len(objects))
    if workers == 1:
        results = _validate_chunk(indexed)
    else:
        for api_version, kind in {(o.get("apiVersion"), o.get("kind")) for o in objects}:
            if isinstance(api_version, str) and isinstance(kind, str):
                validator_for(api_version, kind)
        chunks = [indexed[i::workers] for i in range(workers)]
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_validate_chunk, chunk) for chunk in chunks[1:]]
            results = _validate_chunk(chunks[0])
            for future in futures:
                results += future.result()
        results.sort(key=lambda r: r[0])
    return [SchemaProblem(ref, msg) for _, ref, messages in results for msg in messages]


# --- diff ----------------------------------------------------------------------------------------------------------


@dataclass
class PlanDiff:
    """How one stack's objects differ from another's, matched by kind and name (namespaces may differ per stack).

    Attributes:
        base: the stack compared against (``--diff-from``).
        added: refs only in this stack.
        removed: refs only in the base stack.
        changed: ref -> ``path: old -> new`` lines, for objects in both that differ.
    """

    base: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"base": self.base, "added": self.added, "removed": self.removed, "changed": self.changed}


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return str(obj.get("kind")), str((obj.get("metadata") or {}).get("name"))


def _leaf_changes(old: Any, new: Any, path: str, out: list[str], ignore: frozenset[str]) -> None:
    if path in ignore:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            _leaf_changes(old.get(k), new.get(k), sub, out, ignore)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _leaf_changes(a, b, f"{path}[{i}]", out, ignore)
    elif old != new:
        out.append(f"{path}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if value is not None else "(none)"
    # Long enough for an image reference with its digest: the change a promotion makes.
    return text if len(text) <= 200 else text[:197] + "..."


def diff_plans(plan: StackPlan, base: StackPlan) -> PlanDiff:
    """What ``plan`` would create differently from ``base`` (namespaces ignored in matching and in changes)."""
    ours = {_key(o): o for o in plan.objects}
    theirs = {_key(o): o for o in base.objects}
    diff = PlanDiff(base=base.stack)
    diff.added = sorted(f"{k}/{n}" for k, n in set(ours) - set(theirs))
    diff.removed = sorted(f"{k}/{n}" for k, n in set(theirs) - set(ours))
    ignore = frozenset({"metadata.namespace"})
    for key in sorted(set(ours) & set(theirs)):
        lines: list[str] = []
        _leaf_changes(theirs[key], ours[key], "", lines, ignore)
        if lines:
            diff.changed[f"{key[0]}/{key[1]}"] = lines
    return diff


# --- manifests -----------------------------------------------------------------------------------------------------


def manifest_name(index: int, obj: Mapping[str, Any]) -> str:
    """File name of one object: creation order, kind and name (``007-deployment-car-classifier-alice.yaml``)."""
    kind, name = _key(obj)
    return f"{index:03d}-{kind.lower()}-{name}.yaml"


class _NoAliasDumper(yaml.SafeDumper):
    """Safe YAML without ``&id001``/``*id001``: a builder may share one dict between two places of an object, and a
    manifest for people (and ``kubectl apply``) reads better written out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_manifests(plan: StackPlan, out_dir: Path) -> list[Path]:
    """Write every object as its own YAML file, plus ``plan.json`` (the summary), into ``out_dir``.

    Files of an earlier plan in ``out_dir`` (``NNN-*.yaml``) are removed first so the folder is exactly this plan.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("[0-9][0-9][0-9]-*.yaml"):
        stale.unlink()
    written = []
    for i, obj in enumerate(plan.objects):
        path = out_dir / manifest_name(i, obj)
        path.write_text(yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=False), encoding="utf-8")
        written.append(path)
    summary = out_dir / "plan.json"
    summary.write_text(json.dumps(plan.summary(), indent=2) + "\n", encoding="utf-8")
    written.append(summary)
    return written
