"""Read Azure ML CLI v2 YAML into validated spec models, with every problem located by file, line and field.

Flow: YAML text -> (data, line map) -> placeholder check -> ``azureml:`` references resolved from the project's
registry -> pydantic validation with the instance catalog in context -> spec, or :class:`SpecError` listing every
problem as ``file:line: field.path: message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from endpoints import safe_yaml
from endpoints.catalog import InstanceCatalog
from endpoints.errors import Problem, SpecError
from endpoints.specs import BatchDeployment, BatchEndpoint, OnlineDeployment, OnlineEndpoint
from endpoints.specs.common import REFERENCE_RE

SpecKind = Literal["online_endpoint", "online_deployment", "batch_endpoint", "batch_deployment"]
MODELS: dict[SpecKind, type[BaseModel]] = {
    "online_endpoint": OnlineEndpoint,
    "online_deployment": OnlineDeployment,
    "batch_endpoint": BatchEndpoint,
    "batch_deployment": BatchDeployment,
}
# Azure's schema URL names -> kind (https://azuremlschemas.azureedge.net/latest/<name>.schema.json).
_SCHEMA_KINDS: dict[str, SpecKind] = {
    "managedonlineendpoint": "online_endpoint",
    "kubernetesonlineendpoint": "online_endpoint",
    "managedonlinedeployment": "online_deployment",
    "kubernetesonlinedeployment": "online_deployment",
    "batchendpoint": "batch_endpoint",
    "batchdeployment": "batch_deployment",
    "modelbatchdeployment": "batch_deployment",
    "pipelinecomponentbatchdeployment": "batch_deployment",
}
_BATCH_DEPLOYMENT_KEYS = {
    "mini_batch_size",
    "settings",
    "compute",
    "output_action",
    "retry_settings",
    "error_threshold",
}
# `{{ var }}` (Jinja / Azure samples) and `<ENDPOINT_NAME>` style placeholders left in a template.
PLACEHOLDER_RE = re.compile(r"\{\{.*?\}\}|<[A-Za-z_][A-Za-z0-9_ .:-]*>")
_FREE_TEXT_FIELDS = {"description", "tags"}
REGISTRY_FILE = "registry.yml"

T = TypeVar("T", bound=BaseModel)
LinePath = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A parsed YAML document and the line of every key/item in it."""

    data: Any
    lines: dict[LinePath, int]
    source: str

    def line_of(self, path: LinePath) -> int | None:
        """Line of the deepest existing prefix of ``path``."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: LinePath, message: str) -> Problem:
        """A problem at ``path`` of this document."""
        return Problem(self.source, self.line_of(path), dotted(path), message)


def dotted(path: LinePath) -> str:
    """``("traffic", "bob")`` -> ``traffic.bob``; list indexes as ``[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# libyaml's parser when PyYAML has it: ~10x faster, and the offline plan parses hundreds of spec files.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_and_load(text: str) -> tuple[yaml.Node | None, Any]:
    try:
        return yaml.compose(text, Loader=_FAST_LOADER), yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        # Parse again with the pure-Python parser so error messages read the same with or without libyaml.
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)


def parse_yaml(text: str, source: str) -> Document:
    """Parse one YAML document, keeping lines and refusing duplicate keys.

    Raises:
        SpecError: the text is not YAML, holds several documents, or repeats a key.
    """
    safe_yaml.check_bounds(text, source)  # alias bombs, deep nesting: refused before composing
    try:
        node, data = _compose_and_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(e, "problem", None) or str(e)
        raise SpecError([Problem(source, line, "", f"not valid YAML: {reason}")]) from e
    lines: dict[LinePath, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        lines[()] = node.start_mark.line + 1
        _walk(node, (), lines, duplicates, source)
    if duplicates:
        raise SpecError(duplicates)
    return Document(data, lines, source)


def _walk(node: yaml.Node, path: LinePath, lines: dict[LinePath, int], dups: list[Problem], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                dups.append(Problem(source, key_node.start_mark.line + 1, dotted(child), "key appears twice"))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, dups, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, dups, source)


def detect_kind(data: Mapping[str, Any], hint: Literal["online", "batch"] | None = None) -> SpecKind:
    """Tell which resource a document describes: by ``$schema`` first, then by its keys.

    Args:
        data: The document.
        hint: ``online`` or ``batch`` when the caller knows the endpoint's kind (default: guess from the keys).
    """
    schema = str(data.get("$schema") or "")
    match = re.search(r"/([A-Za-z]+)\.schema\.json$", schema)
    if match and match.group(1).lower() in _SCHEMA_KINDS:
        return _SCHEMA_KINDS[match.group(1).lower()]
    is_deployment = "endpoint_name" in data
    batch = (
        hint == "batch"
        if hint
        else (
            ("defaults" in data)
            if not is_deployment
            else bool(_BATCH_DEPLOYMENT_KEYS & set(data)) or str(data.get("type", "")).lower() in ("model", "pipeline")
        )
    )
    if is_deployment:
        return "batch_deployment" if batch else "online_deployment"
    return "batch_endpoint" if batch else "online_endpoint"


def find_placeholders(doc: Document) -> list[Problem]:
    """Every string value still holding a template placeholder (``{{...}}`` or ``<...>``)."""
    problems: list[Problem] = []

    def visit(value: Any, path: LinePath) -> None:
        if path and path[0] in _FREE_TEXT_FIELDS:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                visit(v, (*path, str(k)))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                visit(v, (*path, i))
        elif isinstance(value, str) and (m := PLACEHOLDER_RE.search(value)):
            problems.append(doc.problem(path, f"got {value!r}; unresolved template placeholder {m.group(0)!r}"))

    visit(doc.data, ())
    return problems


class Registry:
    """Named, versioned models and environments that ``azureml:name:version`` references point at.

    The file (``registry.yml`` in the endpoint folder) lists ``models:`` and ``environments:``, each a list of
    assets with ``name`` and ``version`` written as Azure's inline assets. Relative paths are relative to the file.
    """

    def __init__(self, assets: dict[str, dict[str, dict[str, dict[str, Any]]]], root: Path | None, source: str) -> None:
        self._assets = assets
        self.root = root
        self.source = source

    @classmethod
    def empty(cls) -> Registry:
        """A registry with nothing in it."""
        return cls({"models": {}, "environments": {}}, None, REGISTRY_FILE)

    @classmethod
    def load(cls, path: Path) -> Registry:
        """Read a registry file.

        Raises:
            SpecError: the file is malformed (an entry lacks a name or version, or repeats one).
        """
        doc = parse_yaml(safe_yaml.read_text(path), str(path))
        data = doc.data or {}
        problems: list[Problem] = []
        if not isinstance(data, dict):
            raise SpecError([doc.problem((), "expected a mapping with `models:` and `environments:`")])
        assets: dict[str, dict[str, dict[str, dict[str, Any]]]] = {"models": {}, "environments": {}}
        for section in ("models", "environments"):
            entries = data.get(section) or []
            if not isinstance(entries, list):
                problems.append(doc.problem((section,), "expected a list of assets"))
                continue
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or not entry.get("name") or entry.get("version") is None:
                    problems.append(doc.problem((section, i), "each asset needs `name` and `version`"))
                    continue
                versions = assets[section].setdefault(str(entry["name"]), {})
                version = str(entry["version"])
                if version in versions:
                    problems.append(doc.problem((section, i), f"{entry['name']}:{version} is listed twice"))
                versions[version] = {**entry, "version": version}
        for extra in sorted(set(data) - {"models", "environments"}):
            problems.append(doc.problem((extra,), "unknown section; a registry has `models` and `environments`"))
        if problems:
            raise SpecError(problems)
        return cls(assets, path.parent, str(path))

    def resolve(self, section: Literal["models", "environments"], reference: str) -> dict[str, Any]:
        """The asset a reference names, with relative paths made absolute.

        Raises:
            LookupError: the reference is malformed or names an asset that is not in the registry.
        """
        match = REFERENCE_RE.match(reference)
        if not match:
            raise LookupError(f"got {reference!r}; a reference is azureml:<name>:<version> or azureml:<name>@latest")
        name, version = match.group("name"), match.group("version")
        versions = self._assets[section].get(name)
        kind = section[:-1]
        if not versions:
            known = ", ".join(sorted(self._assets[section])) or "none"
            raise LookupError(f"{reference!r}: no {kind} named {name!r} in {self.source} (known: {known})")
        if version is None:
            version = max(versions, key=_version_key)
        if version not in versions:
            raise LookupError(
                f"{reference!r}: {kind} {name!r} has no version {version!r} in {self.source}"
                f" (versions: {', '.join(sorted(versions, key=_version_key))})"
            )
        asset = {k: v for k, v in versions[version].items()}
        for key in ("path", "conda_file"):
            value = asset.get(key)
            if isinstance(value, str) and self.root is not None and not is_uri(value):
                asset[key] = str((self.root / value).resolve())
        return asset


def _version_key(version: str) -> tuple[int, ...] | tuple[float, str]:
    parts = version.split(".")
    if all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return (float("inf"), version)


def is_uri(value: str) -> bool:
    """Whether a model/code location is remote (``s3://``, ``https://``, ``models:/`` ...), not a local path."""
    return "://" in value or value.startswith("models:/") or value.startswith("azureml:")


def _resolve_references(doc: Document, registry: Registry) -> list[Problem]:
    data = doc.data
    problems: list[Problem] = []
    for field, section in (("model", "models"), ("environment", "environments")):
        value = data.get(field)
        if isinstance(value, str) and value.startswith("azureml:"):
            try:
                data[field] = registry.resolve(section, value)  # type: ignore[arg-type]
            except LookupError as e:
                problems.append(doc.problem((field,), str(e)))
    return problems


def _problems_from_validation(doc: Document, error: ValidationError) -> list[Problem]:
    problems = []
    for err in error.errors(include_url=False):
        path = _data_path(doc.data, err["loc"])
        kind, message = err["type"], err["msg"]
        if kind in ("value_error", "assertion_error"):
            message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
            # Cross-field validators start their message with the field they blame, relative to their model.
            m = re.match(r"^([A-Za-z_]\w*(?:\.[\w-]+)*): (.*)$", message, re.S)
            if m and (not path or m.group(1).split(".")[0] in _keys_at(doc.data, path)):
                path = (*path, *m.group(1).split("."))
                message = m.group(2)
        elif kind == "missing":
            message = "missing; this field is required"
        elif kind == "extra_forbidden":
            message = f"unknown field (got {_short(err.get('input'))}); check the spelling against Azure's schema"
        else:
            message = f"got {_short(err.get('input'))}; {message[0].lower()}{message[1:]}"
        problems.append(doc.problem(path, message))
    return problems


def _under(path: str, blamed: set[str]) -> bool:
    return any(path == b or path.startswith(b + ".") or path.startswith(b + "[") for b in blamed)


def _keys_at(data: Any, path: LinePath) -> set[str]:
    node = data
    for part in path:
        found = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if not found:
            return set()
        node = node[part]
    return set(node) if isinstance(node, dict) else set()


def _data_path(data: Any, loc: tuple[str | int, ...]) -> LinePath:
    """Map a pydantic error location onto the document, dropping union/discriminator tags."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            if part in node:
                out.append(part)
                node = node[part]
                continue
            # A discriminator tag (``asset``, ``target_utilization``) or a missing field.
            if isinstance(part, str) and _is_tag(part, node):
                continue
            out.append(part)
            node = None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, str) and isinstance(part, str) and part in ("ref", "asset", "str"):
            continue
        else:
            out.append(part)
            node = None
    return tuple(out)


def _is_tag(part: str, node: dict[str, Any]) -> bool:
    return part in ("asset", "ref") or node.get("type") == part or part.endswith("ScaleSettings")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_document(
    doc: Document,
    model: type[T],
    *,
    registry: Registry | None = None,
    catalog: InstanceCatalog | None = None,
) -> T:
    """Validate a parsed document against a spec model.

    Raises:
        SpecError: with every problem found (placeholders, references, schema and cross-field rules).
    """
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else f"a {type(doc.data).__name__}"
        raise SpecError([doc.problem((), f"expected a mapping of fields, got {got}")])
    problems = find_placeholders(doc)
    problems += _resolve_references(doc, registry or Registry.empty())
    spec = None
    try:
        spec = model.model_validate(doc.data, context={"catalog": catalog or InstanceCatalog.default()})
    except ValidationError as e:
        # A field already blamed for a placeholder or a reference is not blamed twice.
        blamed = {p.path for p in problems}
        problems += [p for p in _problems_from_validation(doc, e) if not _under(p.path, blamed)]
    if problems or spec is None:
        raise SpecError(sorted(problems, key=lambda p: p.line or 0))
    spec._source_path = doc.source  # type: ignore[attr-defined]
    return spec


def load_spec(
    path: str | Path,
    *,
    kind: SpecKind | None = None,
    registry: Registry | None = None,
    catalog: InstanceCatalog | None = None,
) -> OnlineEndpoint | OnlineDeployment | BatchEndpoint | BatchDeployment:
    """Read and validate one spec file.

    Args:
        path: The YAML file.
        kind: The resource kind; default: detected from ``$schema`` or the keys.
        registry: Where ``azureml:`` references resolve; default: ``registry.yml`` beside the file or in its parent.
        catalog: Instance types; default: the shipped catalog extended by ``instance_types.yml`` beside the file.

    Raises:
        SpecError: the file is missing, not YAML or not a valid spec; every problem is listed.
    """
    path = Path(path)
    doc = parse_yaml(safe_yaml.read_text(path), str(path))
    if registry is None:
        registry = Registry.empty()
        for folder in (path.parent, path.parent.parent):
            if (folder / REGISTRY_FILE).is_file():
                registry = Registry.load(folder / REGISTRY_FILE)
                break
    if catalog is None:
        catalog = InstanceCatalog.for_project(path.parent)
    data = doc.data if isinstance(doc.data, dict) else {}
    spec_kind = kind or detect_kind(data)
    return validate_document(doc, MODELS[spec_kind], registry=registry, catalog=catalog)  # type: ignore[return-value]
