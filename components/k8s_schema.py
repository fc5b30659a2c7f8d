"""Validate rendered Kubernetes objects offline: core kinds against Kubernetes' OpenAPI, custom resources against CRDs.

Core kinds (``apps/v1`` Deployment, ``v1`` Service, ...) are checked with the strict JSON schemas that ship inside
``kubernetes-validate`` (unknown fields are errors) for :data:`KUBERNETES_VERSION`. Custom resources (Gateway API,
Kueue, KEDA) are checked with ``jsonschema`` against the CRDs copied into ``components/crds/`` (package data, so a
clean clone or an installed wheel needs nothing beside the repository). The Prometheus Operator's PodMonitor and
PrometheusRule (``monitoring.coreos.com``) are checked against its CRDs where the toolchain has them
(:func:`toolchain_crd_dir`, installed by ``scripts/toolchain.sh``; they are not copied into the repository); without
them such an object is a problem naming the command that installs them. CRD schemas are tightened the same way:
objects that declare ``properties`` reject unknown keys, and ``metadata`` is checked against ``ObjectMeta``.

Calling ``kubernetes_validate.validate`` builds a new validator per object (~12 ms each). The offline plan checks
hundreds of objects, so compiled validators are cached here per ``(apiVersion, kind)``, the 1.8 MB definitions
file is read once per process, and ``$ref``s are inlined once (see :class:`_Dereferencer`).
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The newest Kubernetes minor whose schemas kubernetes-validate ships (checked by a test against the installed
# package, so that an upgrade is a one-line change here).
KUBERNETES_VERSION = "1.37.0"

# API groups validated against CRDs instead of the core OpenAPI: components/crds/, or the toolchain's crds/.
TOOLCHAIN_CRD_GROUPS = frozenset({"monitoring.coreos.com"})
CRD_GROUPS = frozenset({"gateway.networking.k8s.io", "kueue.x-k8s.io", "keda.sh", *TOOLCHAIN_CRD_GROUPS})
TOOLCHAIN_ENV = "ENDPOINTS_TOOLCHAIN_DIR"
TOOLCHAIN_CRD_COMMAND = "scripts/toolchain.sh build prometheus-operator-crds"

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Kinds whose name the API server checks as a DNS-1035 label (Services become DNS names) or a DNS-1123 label.
_DNS1035_KINDS = frozenset({"Service"})
_DNS1123_LABEL_KINDS = frozenset({"Namespace"})
_CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "PriorityClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "ResourceFlavor",
        "ClusterQueue",
        "WorkloadPriorityClass",
        "GatewayClass",
    }
)

_lock = threading.Lock()
_validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}


def _schema_dir() -> Path:
    import kubernetes_validate  # imported lazily: only validation needs it

    return Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"


def crd_dir() -> Path:
    """Folder of the CRD YAML files shipped with the package."""
    return Path(str(resources.files("components").joinpath("crds")))


def toolchain_crd_dir() -> Path:
    """``$ENDPOINTS_TOOLCHAIN_DIR/crds``, else ``<repository>/.toolchain/crds``: the Prometheus Operator's CRDs as
    ``scripts/toolchain.sh`` installs them from its Go module (toolchain/versions.env pins the release)."""
    env = os.environ.get(TOOLCHAIN_ENV)
    base = Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / ".toolchain"
    return base / "crds"


def _crd_folder(group: str) -> Path:
    return toolchain_crd_dir() if group in TOOLCHAIN_CRD_GROUPS else crd_dir()


@cache
def _definitions() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((_schema_dir() / "_definitions.json").read_text(encoding="utf-8"))
    return doc["$defs"]


class _Dereferencer:
    """Replace every ``$ref`` into Kubernetes' definitions by the definition itself (shared, so recursive
    definitions become cyclic dicts). ``jsonschema`` then validates with plain dict lookups: resolving refs through
    a ``referencing`` registry on every use made a Deployment cost ~12 ms; inlined, well under 1 ms."""

    def __init__(self) -> None:
        self._done: dict[str, dict[str, Any]] = {}

    def definition(self, name: str) -> dict[str, Any]:
        if name not in self._done:
            target: dict[str, Any] = {}
            self._done[name] = target  # placed first: a definition may refer to itself
            target.update(self.walk(_definitions()[name]))
        return self._done[name]

    def walk(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and "#/$defs/" in ref:
            resolved = self.definition(ref.split("#/$defs/", 1)[1])
            rest = {k: self.walk(v) for k, v in node.items() if k not in ("$ref", "description")}
            return {"allOf": [resolved], **rest} if rest else resolved
        return {k: self.walk(v) for k, v in node.items()}


@cache
def _dereferencer() -> _Dereferencer:
    return _Dereferencer()


def _core_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    # Same file naming as kubernetes-validate: rbac.authorization.k8s.io/v1 -> rbac-v1.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir() / f"{kind.lower()}-{api}.json"
    if not path.is_file():
        return None
    schema = _dereferencer().walk(json.loads(path.read_text(encoding="utf-8")))
    return jsonschema.Draft202012Validator(schema)


def _tighten(schema: Any) -> Any:
    """Reject unknown keys wherever a CRD object schema lists its properties (the API server prunes them)."""
    if isinstance(schema, dict):
        out = {k: _tighten(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_tighten(v) for v in schema]
    return schema


@cache
def _crd_document(folder: Path, group: str, kind: str) -> dict[str, Any] | None:
    plural_candidates = [f"{kind.lower()}s", f"{kind.lower()}es"]
    for plural in plural_candidates:
        path = folder / f"{group}_{plural}.yaml"
        if path.is_file():
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            doc: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
            if doc.get("spec", {}).get("names", {}).get("kind") == kind:
                return doc
    return None


def _crd_validator(group: str, version: str, kind: str) -> jsonschema.protocols.Validator | None:
    doc = _crd_document(_crd_folder(group), group, kind)
    if doc is None:
        return None
    for v in doc["spec"]["versions"]:
        if v["name"] == version:
            schema = _tighten(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
            break
    else:
        return None
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = {
        "$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    schema["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return jsonschema.Draft202012Validator(_dereferencer().walk(schema))


def validator_for(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    """The compiled (cached) validator of a kind, or ``None`` when no schema is known for it."""
    key = (api_version, kind)
    with _lock:
        if key in _validators:
            return _validators[key]
    group, _, version = api_version.rpartition("/")
    found = _crd_validator(group, version, kind) if group in CRD_GROUPS else _core_validator(api_version, kind)
    if found is not None:
        with _lock:
            _validators[key] = found
    return found


def _normalise(value: Any) -> Any:
    # Pulumi's mocks hand numbers over as floats (2.0); the API server reads 2.0 as the integer 2.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _metadata_problems(obj: dict[str, Any]) -> list[str]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return ["metadata: missing"]
    out: list[str] = []
    kind = obj.get("kind", "")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        out.append("metadata.name: missing")
    else:
        if kind in _DNS1035_KINDS:
            ok, rule = len(name) <= 63 and bool(_DNS1035_LABEL.match(name)), "a DNS-1035 label (<= 63 characters)"
        elif kind in _DNS1123_LABEL_KINDS:
            ok, rule = len(name) <= 63 and bool(_DNS1123_LABEL.match(name)), "a DNS-1123 label (<= 63 characters)"
        else:
            ok, rule = len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name)), "a DNS-1123 subdomain"
        if not ok:
            out.append(f"metadata.name: got {name!r}; a {kind} name must be {rule}")
    if kind in _CLUSTER_SCOPED and "namespace" in meta:
        out.append(f"metadata.namespace: {kind} is cluster-scoped; got namespace {meta['namespace']!r}")
    for field in ("labels",):
        for key, value in (meta.get(field) or {}).items():
            prefix, _, label_name = str(key).rpartition("/")
            if (
                not _LABEL_NAME.match(label_name)
                or len(label_name) > 63
                or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)))
            ):
                out.append(f"metadata.labels: got key {key!r}; not a valid label name")
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                out.append(f"metadata.labels.{key}: got {value!r}; label values are <= 63 alphanumerics, '-', '_', '.'")
    return out


def validate_object(obj: dict[str, Any]) -> list[str]:
    """Validate one rendered object.

    Args:
        obj: The object as the API server would receive it (camelCase dict with ``apiVersion``, ``kind`` and
            ``metadata``). Integral floats (as Pulumi's mocks produce) are read as integers.

    Returns:
        One message per problem, ``"<Kind>/<name>: <field.path>: <message>"``; empty when the object is valid.
        An object of a kind with no known schema is a problem too (never silently passed).
    """
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "?") if isinstance(obj.get("metadata"), dict) else "?"
    where = f"{kind}/{name}"
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [f"{where}: apiVersion/kind: missing (got apiVersion={api_version!r}, kind={kind!r})"]
    validator = validator_for(api_version, kind)
    if validator is None:
        group = api_version.rpartition("/")[0]
        if group in TOOLCHAIN_CRD_GROUPS:
            return [
                f"{where}: no schema for kind {kind!r} in {api_version!r}: the Prometheus Operator's CRDs are not in "
                f"{toolchain_crd_dir()} (`{TOOLCHAIN_CRD_COMMAND}` installs them; {TOOLCHAIN_ENV} moves the folder)"
            ]
        return [f"{where}: no schema for kind {kind!r} in {api_version!r} (Kubernetes {KUBERNETES_VERSION} or CRDs)"]
    data = _normalise(obj)
    problems = [f"{where}: {p}" for p in _metadata_problems(data)]
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in err.absolute_path) or "<root>"
        problems.append(f"{where}: {path}: {err.message}")
    return problems


def validate_objects(objs: list[dict[str, Any]]) -> list[str]:
    """Validate many objects; the concatenated problems of :func:`validate_object`."""
    out: list[str] = []
    for obj in objs:
        out.extend(validate_object(obj))
    return out
