"""The endpoint project folder: one endpoint, its deployments, their code and models.

Convention (see docs/endpoint-project.md)::

    my-endpoint/
      endpoint.yml              the endpoint (online or batch)
      deployments/<name>.yml    one file per deployment (or Azure's layouts beside endpoint.yml: see
                                deployment_files)
      registry.yml              optional: models/environments that `azureml:name:version` references point at
      instance_types.yml        optional: extra instance types
      <code and model folders the deployments reference, relative to their own file>
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from endpoints import safe_yaml
from endpoints.catalog import InstanceCatalog
from endpoints.errors import Problem, SpecError
from endpoints.loader import REGISTRY_FILE, Document, Registry, detect_kind, is_uri, parse_yaml, validate_document
from endpoints.specs import BatchDeployment, BatchEndpoint, OnlineDeployment, OnlineEndpoint

ENDPOINT_FILE = "endpoint.yml"
DEPLOYMENTS_DIR = "deployments"

Endpoint = OnlineEndpoint | BatchEndpoint
Deployment = OnlineDeployment | BatchDeployment


@dataclass
class EndpointProject:
    """A validated endpoint folder.

    Attributes:
        root: The folder.
        endpoint: The endpoint spec.
        deployments: Deployment specs by name, in file-name order.
        endpoint_file: The endpoint file that was read (``endpoint.yml`` unless another was named).
        catalog: Instance types visible to this project.
        notes: Fields accepted but not acted on, one line each.
    """

    root: Path
    endpoint: Endpoint
    deployments: dict[str, Deployment]
    endpoint_file: Path
    catalog: InstanceCatalog
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``online`` or ``batch``."""
        return self.endpoint.kind

    def deployment_file(self, name: str) -> Path:
        """The file a deployment was read from."""
        source = self.deployments[name].source_path
        return Path(source) if source else self.root / DEPLOYMENTS_DIR / f"{name}.yml"

    def local_path(self, deployment: str, relative: str) -> Path:
        """Resolve a path written in a deployment file (relative to that file) to an absolute path."""
        return (self.deployment_file(deployment).parent / relative).resolve()


def load_endpoint_project(root: str | Path, endpoint_file: str = ENDPOINT_FILE) -> EndpointProject:
    """Read and validate an endpoint folder, checking every file and every cross-file rule.

    Args:
        root: The endpoint folder.
        endpoint_file: The endpoint file inside it (default ``endpoint.yml``; e.g. ``endpoint.mirror.yml``).

    Raises:
        SpecError: listing every problem in every file (nothing is reported one at a time).
    """
    root = Path(root)
    endpoint_path = root / endpoint_file
    if not endpoint_path.is_file():
        raise SpecError([Problem(str(endpoint_path), None, "", "no such file; an endpoint folder holds endpoint.yml")])
    problems: list[Problem] = []
    catalog = _load_catalog(root, problems)
    registry = _load_registry(root, problems)

    endpoint: Endpoint | None = None
    endpoint_doc = _parse(endpoint_path, problems)
    hint = None
    if endpoint_doc is not None and isinstance(endpoint_doc.data, dict):
        hint = "batch" if detect_kind(endpoint_doc.data).startswith("batch") else "online"
        endpoint = _validate(
            endpoint_doc, OnlineEndpoint if hint == "online" else BatchEndpoint, registry, catalog, problems
        )
    elif endpoint_doc is not None:
        problems.append(endpoint_doc.problem((), "expected a mapping of fields"))

    deployments: dict[str, Deployment] = {}
    deployment_docs: dict[str, Document] = {}
    invalid_names: set[str] = set()
    files = deployment_files(root)
    if not files:
        problems.append(Problem(str(root), None, "deployments", NO_DEPLOYMENTS))
    for path in files:
        doc = _parse(path, problems)
        if doc is None:
            continue
        data = doc.data if isinstance(doc.data, dict) else {}
        kind = detect_kind(data, hint)  # type: ignore[arg-type]
        model = OnlineDeployment if kind == "online_deployment" else BatchDeployment
        spec = _validate(doc, model, registry, catalog, problems)
        if spec is None:
            # Known by name, so that the endpoint's traffic is not also blamed for naming it.
            if isinstance(data.get("name"), str):
                invalid_names.add(data["name"])
            continue
        if spec.name in deployments:
            problems.append(doc.problem(("name",), f"got {spec.name!r}; another file already defines this deployment"))
            continue
        deployments[spec.name] = spec
        deployment_docs[spec.name] = doc
        _check_local_paths(doc, spec, problems)

    if endpoint is not None and endpoint_doc is not None:
        _check_cross_file(endpoint, endpoint_doc, deployments, deployment_docs, invalid_names, problems)
    if problems:
        raise SpecError(problems)
    assert endpoint is not None  # no problems means the endpoint validated
    notes = [f"{endpoint_path}: {n}" for n in endpoint.notes()] if isinstance(endpoint, OnlineEndpoint) else []
    for name, spec in deployments.items():
        notes += [f"{deployment_docs[name].source}: {n}" for n in spec.notes()]
    return EndpointProject(root, endpoint, deployments, endpoint_path, catalog, notes)


NO_DEPLOYMENTS = (
    "got no deployment files; put each deployment in deployments/<name>.yml, or beside endpoint.yml as Azure's"
    " samples do (<name>-deployment.yml, or <folder>/deployment.yml: any YAML file naming endpoint_name)"
)
_ENDPOINT_NAME_KEY = re.compile(rb"^endpoint_name\s*:", re.MULTILINE)
_SNIFF_BYTES = 1 << 20


def deployment_files(root: Path) -> list[Path]:
    """The deployment files of an endpoint folder, in name order.

    Every YAML file of ``deployments/``; and, as Azure's samples lay them out, every YAML file beside
    ``endpoint.yml`` or one folder down (``blue-deployment.yml``, ``deployment-blue/deployment.yml``) whose
    top level names ``endpoint_name`` (what only a deployment has). Files over 1 MiB are not sniffed.
    """
    folder = root / DEPLOYMENTS_DIR
    found = {*folder.glob("*.yml"), *folder.glob("*.yaml")} if folder.is_dir() else set()
    for pattern in ("*.yml", "*.yaml", "*/*.yml", "*/*.yaml"):
        for path in root.glob(pattern):
            parts = path.relative_to(root).parts
            if parts[0] == DEPLOYMENTS_DIR or any(p.startswith(".") for p in parts) or not path.is_file():
                continue
            try:
                with path.open("rb") as f:
                    head = f.read(_SNIFF_BYTES)
            except OSError:
                continue
            if _ENDPOINT_NAME_KEY.search(head):
                found.add(path)
    return sorted(found)


def _parse(path: Path, problems: list[Problem]) -> Document | None:
    try:
        return parse_yaml(safe_yaml.read_text(path), str(path))
    except SpecError as e:
        problems.extend(e.problems)
    except OSError as e:
        problems.append(Problem(str(path), None, "", f"cannot read: {e.strerror or e}"))
    return None


def _validate(doc: Document, model: Any, registry: Registry, catalog: InstanceCatalog, problems: list[Problem]) -> Any:
    try:
        return validate_document(doc, model, registry=registry, catalog=catalog)
    except SpecError as e:
        problems.extend(e.problems)
        return None


def _load_catalog(root: Path, problems: list[Problem]) -> InstanceCatalog:
    try:
        return InstanceCatalog.for_project(root)
    except SpecError as e:
        problems.extend(e.problems)
        return InstanceCatalog.default()


def _load_registry(root: Path, problems: list[Problem]) -> Registry:
    path = root / REGISTRY_FILE
    if not path.is_file():
        return Registry.empty()
    try:
        return Registry.load(path)
    except SpecError as e:
        problems.extend(e.problems)
        return Registry.empty()


def _check_local_paths(doc: Document, spec: Deployment, problems: list[Problem]) -> None:
    base = Path(doc.source).parent
    code = spec.code_configuration
    if code is not None and not is_uri(code.code):
        code_dir = base / code.code
        if not code_dir.is_dir():
            problems.append(
                doc.problem(("code_configuration", "code"), f"got {code.code!r}; no such folder ({code_dir})")
            )
        elif not (code_dir / code.scoring_script).is_file():
            problems.append(
                doc.problem(
                    ("code_configuration", "scoring_script"),
                    f"got {code.scoring_script!r}; no such file in {code_dir}",
                )
            )
    model = spec.model
    if model is not None and not isinstance(model, str) and not is_uri(model.path) and not (base / model.path).exists():
        problems.append(doc.problem(("model", "path"), f"got {model.path!r}; no such file or folder"))
    env = spec.environment
    conda = env.conda_file if env is not None and not isinstance(env, str) else None
    if isinstance(conda, str) and conda and not is_uri(conda) and not (base / conda).is_file():
        problems.append(doc.problem(("environment", "conda_file"), f"got {conda!r}; no such file"))


def _check_cross_file(
    endpoint: Endpoint,
    endpoint_doc: Document,
    deployments: dict[str, Deployment],
    docs: dict[str, Document],
    invalid_names: set[str],
    problems: list[Problem],
) -> None:
    names = ", ".join(sorted(deployments)) or "none"
    known = set(deployments) | invalid_names
    for name, spec in deployments.items():
        if spec.endpoint_name != endpoint.name:
            problems.append(
                docs[name].problem(
                    ("endpoint_name",), f"got {spec.endpoint_name!r}; this folder's endpoint is {endpoint.name!r}"
                )
            )
        if spec.kind != endpoint.kind:
            problems.append(
                docs[name].problem(
                    (), f"a {spec.kind} deployment cannot belong to {endpoint.kind} endpoint {endpoint.name!r}"
                )
            )
    if isinstance(endpoint, OnlineEndpoint):
        for field_name in ("traffic", "mirror_traffic"):
            for target in getattr(endpoint, field_name):
                if target not in known:
                    problems.append(
                        endpoint_doc.problem(
                            (field_name, target), f"no deployment named {target!r} (deployments: {names})"
                        )
                    )
    else:
        default = endpoint.defaults.deployment_name
        if default is not None and default not in known:
            problems.append(
                endpoint_doc.problem(
                    ("defaults", "deployment_name"),
                    f"got {default!r}; no deployment of that name (deployments: {names})",
                )
            )
