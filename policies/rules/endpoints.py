"""Endpoint rules: auth, traffic and mirroring, private prod routes, GPU placement, keys out of plain config."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from contract.batch import SETTINGS_ENV
from contract.serving import ENV_VARS
from policies.rules.common import (
    GPU_RESOURCE,
    Context,
    Violation,
    containers,
    dig,
    make_violation,
    object_label,
    pod_spec,
)
from policies.rules.pod_security import POD_TYPES
from policies.rules.registry import ResourceRule, resource_validator

HTTPROUTE_TYPES = frozenset(
    {"kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "kubernetes:gateway.networking.k8s.io/v1beta1:HTTPRoute"}
)
CONFIGMAP_TYPES = frozenset({"kubernetes:core/v1:ConfigMap"})

AUTH_MODE_ENV = "ENDPOINTS_AUTH_MODE"
AUTH_MODES = ("key", "aml_token", "aad_token")
MAX_MIRROR_PERCENT = 50

# Name parts that mark a secret, and final parts that mark a reference to one (a path, a URL, a mode).
_SECRET_WORDS = frozenset(
    {"KEY", "KEYS", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "APIKEY"}
)
_REFERENCE_SUFFIXES = frozenset({"FILE", "DIR", "PATH", "URL", "URI", "MODE", "NAME", "ID", "ISSUER", "AUDIENCE"})
# Our own key file names (ENDPOINTS_KEYS_DIR/primary, /secondary): a ConfigMap entry with these names holds a key.
_KEY_FILE_NAMES = frozenset({"PRIMARY", "SECONDARY"})


def has_key(mapping: Mapping[str, Any], key: str) -> bool:
    """``key in mapping`` without reading the value: during ``pulumi preview`` reading an unknown value (an output
    not computed yet) aborts the policy, and whether a key is present is known before its value is."""
    return any(k == key for k in mapping)


def looks_secret(name: str, *, key_files: bool = False) -> bool:
    """Return True when a variable or data key name says it holds a secret value (not a path to one)."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name.upper()) if p]
    if not parts or parts[-1] in _REFERENCE_SUFFIXES:
        return False
    if key_files and len(parts) == 1 and parts[0] in _KEY_FILE_NAMES:
        return True
    return any(p in _SECRET_WORDS for p in parts)


# --- auth-enabled --------------------------------------------------------------------------------------------------


# The serving front end's settings (the serving contract): a container with any of them answers requests.
FRONTEND_ENV = frozenset(ENV_VARS)


def _is_serving(container: Mapping[str, Any]) -> bool:
    """A serving container is configured through the front end's ENDPOINTS_* settings (batch runners, which take
    no requests, carry only ENDPOINTS_BATCH_SETTINGS)."""
    return any(str(e.get("name", "")) in FRONTEND_ENV for e in container.get("env") or ())


def check_auth_enabled(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Serving containers authenticate every request (keys or tokens); the default mode none is refused."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    out: list[Violation] = []
    for c in pod.get("containers") or ():
        if not _is_serving(c):
            continue
        entry = next((e for e in c.get("env") or () if e.get("name") == AUTH_MODE_ENV), None)
        modes = ", ".join(AUTH_MODES[:-1]) + f" or {AUTH_MODES[-1]}"
        if entry is None:
            message = f'container "{c.get("name")}" has no {AUTH_MODE_ENV}, so auth defaults to none; set it to {modes}'
        elif not has_key(entry, "valueFrom") and str(entry.get("value", "")) not in AUTH_MODES:
            message = (
                f'container "{c.get("name")}" disables auth ({AUTH_MODE_ENV}={entry.get("value", "")}); '
                f"set it to {modes}"
            )
        else:
            continue
        out.append(make_violation("auth-enabled", obj, message))
    return out


# --- traffic and mirror --------------------------------------------------------------------------------------------


def _is_default_rule(rule: Mapping[str, Any]) -> bool:
    """The default rule carries live traffic: no match pins a deployment by header."""
    return not any(m.get("headers") for m in rule.get("matches") or ())


def _weights(rule: Mapping[str, Any]) -> list[tuple[str, int]]:
    # Gateway API's default weight is 1; our routes always set it, so a missing weight is reported as 1.
    return [(str(ref.get("name")), int(ref.get("weight", 1))) for ref in rule.get("backendRefs") or ()]


def check_traffic_sums(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Live traffic weights on the default rule are percentages summing to 0 or 100."""
    if obj.get("kind") != "HTTPRoute":
        return []
    out: list[Violation] = []
    for rule in dig(obj, "spec", "rules") or ():
        if not _is_default_rule(rule):
            continue
        weights = _weights(rule)
        total = sum(w for _, w in weights)
        if weights and total not in (0, 100):
            parts = " + ".join(f"{name}={w}" for name, w in weights)
            out.append(
                make_violation(
                    "traffic-sums-to-100",
                    obj,
                    f"{object_label(obj)} splits live traffic {parts} = {total}; live traffic must sum to 0 or 100",
                )
            )
    return out


def _mirror_percent(mirror: Mapping[str, Any]) -> float:
    if "percent" in mirror:
        return float(mirror["percent"])
    fraction = mirror.get("fraction")
    if isinstance(fraction, Mapping):
        return 100.0 * float(fraction.get("numerator", 0)) / float(fraction.get("denominator", 100) or 100)
    return 100.0  # no percent or fraction: Gateway API mirrors every request


def check_mirror(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Mirror at most 50 % of traffic, and only to a deployment that takes no live traffic."""
    if obj.get("kind") != "HTTPRoute":
        return []
    out: list[Violation] = []
    for rule in dig(obj, "spec", "rules") or ():
        live = {name: w for name, w in _weights(rule) if w > 0}
        for f in rule.get("filters") or ():
            if f.get("type") != "RequestMirror":
                continue
            mirror = f.get("requestMirror") or {}
            target = str(dig(mirror, "backendRef", "name") or "")
            percent = _mirror_percent(mirror)
            if percent > MAX_MIRROR_PERCENT:
                out.append(
                    make_violation(
                        "mirror-limits",
                        obj,
                        f'{object_label(obj)} mirrors {percent:g}% of traffic to "{target}"; mirror at most '
                        f"{MAX_MIRROR_PERCENT}% (mirror_traffic)",
                    )
                )
            if target in live:
                out.append(
                    make_violation(
                        "mirror-limits",
                        obj,
                        f'{object_label(obj)} mirrors to "{target}", which takes {live[target]}% of live traffic; '
                        "mirror only to a deployment with 0 live traffic",
                    )
                )
    return out


# --- prod-endpoint-private -----------------------------------------------------------------------------------------


def check_prod_private(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """In prod, routes attach only to a private Gateway (``public_network_access: disabled``)."""
    if not ctx.is_prod or obj.get("kind") != "HTTPRoute":
        return []
    out: list[Violation] = []
    route_namespace = str(dig(obj, "metadata", "namespace") or "default")
    for ref in dig(obj, "spec", "parentRefs") or ():
        gateway = str(ref.get("name", ""))
        qualified = f"{ref.get('namespace') or route_namespace}/{gateway}"
        if gateway not in ctx.private_gateways and qualified not in ctx.private_gateways:
            private = ", ".join(f'"{g}"' for g in ctx.private_gateways)
            out.append(
                make_violation(
                    "prod-endpoint-private",
                    obj,
                    f'{object_label(obj)} attaches to public Gateway "{gateway}"; prod endpoints must be private: '
                    f"set public_network_access: disabled so the route attaches to Gateway {private}",
                )
            )
    return out


# --- gpu-on-gpu-pool -----------------------------------------------------------------------------------------------


def _requests_gpu(container: Mapping[str, Any]) -> bool:
    resources = container.get("resources") or {}
    return any(GPU_RESOURCE in (resources.get(k) or {}) for k in ("requests", "limits"))


def _has_node_affinity(pod: Mapping[str, Any]) -> bool:
    return bool(dig(pod, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"))


def check_gpu_on_gpu_pool(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """A pod that asks for a GPU selects a GPU pool and tolerates its taint, so it lands where GPUs are."""
    pod = pod_spec(obj)
    if pod is None:
        return []
    gpu_containers = [c for c in containers(pod) if _requests_gpu(c)]
    if not gpu_containers:
        return []
    name = gpu_containers[0].get("name")
    out: list[Violation] = []
    selector = pod.get("nodeSelector") or {}
    if ctx.gpu_pool_label not in selector and not _has_node_affinity(pod):
        out.append(
            make_violation(
                "gpu-on-gpu-pool",
                obj,
                f'container "{name}" requests {GPU_RESOURCE} but the pod selects no GPU pool; set '
                f'nodeSelector["{ctx.gpu_pool_label}"] from the instance type\'s pool',
            )
        )
    tolerations = pod.get("tolerations") or ()
    if not any(
        t.get("key") == GPU_RESOURCE or (t.get("operator") == "Exists" and not t.get("key")) for t in tolerations
    ):
        out.append(
            make_violation(
                "gpu-on-gpu-pool",
                obj,
                f'container "{name}" requests {GPU_RESOURCE} but the pod does not tolerate the GPU taint; add a '
                f'toleration for key "{GPU_RESOURCE}"',
            )
        )
    return out


# --- keys-not-in-plain-config --------------------------------------------------------------------------------------


def check_keys_not_plain(obj: Mapping[str, Any], ctx: Context) -> list[Violation]:
    """Keys, tokens and passwords come from Secrets (mounted files or secretKeyRef), never plain config."""
    out: list[Violation] = []
    if obj.get("kind") == "ConfigMap":
        for section in ("data", "binaryData"):
            for key in sorted(obj.get(section) or {}):
                if looks_secret(str(key), key_files=True):
                    out.append(
                        make_violation(
                            "keys-not-in-plain-config",
                            obj,
                            f'{object_label(obj)} holds "{key}" in plain config; move it to a Secret and mount it',
                        )
                    )
        return out
    pod = pod_spec(obj)
    if pod is None:
        return []
    for c in containers(pod):
        for name in plain_env_names(c):
            if looks_secret(name):
                out.append(
                    make_violation(
                        "keys-not-in-plain-config",
                        obj,
                        f'container "{c.get("name")}" sets {name} as a plain value; load it from a Secret '
                        "(valueFrom.secretKeyRef or a mounted file)",
                    )
                )
    return out


# The batch runner's settings variable (the contract's): a batch deployment's environment_variables travel inside
# its JSON.
BATCH_SETTINGS_ENV = SETTINGS_ENV


def plain_env_names(container: Mapping[str, Any]) -> list[str]:
    """Names of the variables a container gets as plain values: its ``env`` entries with a ``value``, and for a
    batch runner the ``environment_variables`` its settings JSON hands to the scoring code (the same rule must hold
    for online and batch deployments)."""
    names: list[str] = []
    for e in container.get("env") or ():
        if not has_key(e, "value"):
            continue
        names.append(str(e.get("name", "")))
        if e.get("name") == BATCH_SETTINGS_ENV:
            try:
                settings = json.loads(str(e.get("value")))
            except ValueError:
                continue  # not ours to judge: the runner refuses it at start, naming the variable
            env = settings.get("environment_variables") if isinstance(settings, dict) else None
            if isinstance(env, dict):
                names.extend(str(k) for k in env)
    return names


AUTH_ENABLED = ResourceRule(
    "auth-enabled",
    "Endpoint servers must authenticate every request (key, aml_token or aad_token); an endpoint without auth "
    "lets anyone score and read the model's answers.",
    POD_TYPES,
    check_auth_enabled,
)
TRAFFIC_SUMS = ResourceRule(
    "traffic-sums-to-100",
    "Live traffic weights are percentages and must sum to 0 or 100, as Azure ML requires, so the split is exactly "
    "what was reviewed.",
    HTTPROUTE_TYPES,
    check_traffic_sums,
)
MIRROR_LIMITS = ResourceRule(
    "mirror-limits",
    "Mirrored traffic is at most 50 % and goes only to a deployment with no live traffic, or live requests are "
    "scored twice and the test deployment's load doubles.",
    HTTPROUTE_TYPES,
    check_mirror,
)
PROD_PRIVATE = ResourceRule(
    "prod-endpoint-private",
    "Prod endpoints are private: their routes attach only to the private Gateway.",
    HTTPROUTE_TYPES,
    check_prod_private,
)
GPU_ON_GPU_POOL = ResourceRule(
    "gpu-on-gpu-pool",
    "Pods that request a GPU must select a GPU pool and tolerate its taint, or they stay Pending.",
    POD_TYPES,
    check_gpu_on_gpu_pool,
)
KEYS_NOT_PLAIN = ResourceRule(
    "keys-not-in-plain-config",
    "Keys, tokens and passwords must come from Secrets; plain config is readable by anyone who can read the "
    "namespace and lands in logs and diffs.",
    POD_TYPES | CONFIGMAP_TYPES,
    check_keys_not_plain,
)

RULES: tuple[ResourceRule, ...] = (
    AUTH_ENABLED,
    TRAFFIC_SUMS,
    MIRROR_LIMITS,
    PROD_PRIVATE,
    GPU_ON_GPU_POOL,
    KEYS_NOT_PLAIN,
)


auth_enabled_validator = resource_validator(AUTH_ENABLED)
traffic_sums_validator = resource_validator(TRAFFIC_SUMS)
mirror_limits_validator = resource_validator(MIRROR_LIMITS)
prod_private_validator = resource_validator(PROD_PRIVATE)
gpu_on_gpu_pool_validator = resource_validator(GPU_ON_GPU_POOL)
keys_not_plain_validator = resource_validator(KEYS_NOT_PLAIN)


VALIDATORS = {
    AUTH_ENABLED.name: auth_enabled_validator,
    TRAFFIC_SUMS.name: traffic_sums_validator,
    MIRROR_LIMITS.name: mirror_limits_validator,
    PROD_PRIVATE.name: prod_private_validator,
    GPU_ON_GPU_POOL.name: gpu_on_gpu_pool_validator,
    KEYS_NOT_PLAIN.name: keys_not_plain_validator,
}
