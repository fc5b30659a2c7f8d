"""Instance types: names Azure ML specs use (``instance_type``) mapped to CPU, memory, GPUs and a compute pool.

The shipped catalog (``endpoints/data/instance_types.yaml``) holds the Azure VM sizes used in Azure ML's docs and
samples plus generic names; a project extends or overrides it with an ``instance_types.yml`` of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from endpoints import safe_yaml
from endpoints.errors import Problem, SpecError

PROJECT_CATALOG_FILE = "instance_types.yml"

# Share of a VM's CPU and memory that a pod may request: the rest is left to the kubelet, the OS and daemon sets,
# as AKS reserves it (so that a pod of type X fits on a node of type X).
_REQUEST_SHARE = 0.85


class InstanceType(BaseModel):
    """One instance type of the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name as written in `instance_type`.")
    vcpu: float = Field(gt=0, le=1024, description="Virtual CPUs of the VM size.")
    memory_gib: float = Field(gt=0, le=65536, description="Memory of the VM size in GiB.")
    gpu_count: int = Field(default=0, ge=0, le=16, description="GPUs per instance (default 0).")
    gpu_kind: str | None = Field(default=None, description="GPU product label, e.g. `nvidia-tesla-t4`.")
    pool: str = Field(min_length=1, description="Compute pool (node group) the type runs in.")

    @property
    def is_gpu(self) -> bool:
        """Whether the type carries at least one GPU."""
        return self.gpu_count > 0

    def kubernetes_resources(self) -> dict[str, dict[str, str]]:
        """Requests and limits for one pod of this type.

        Requests are 85 % of the VM's CPU and memory (the rest is node overhead); limits are the full memory
        (memory is not compressible, so the limit is what the pod may use before it is killed) and the full CPU.
        GPUs are whole devices: request == limit.
        """
        cpu_request_m = max(100, math.floor(self.vcpu * 1000 * _REQUEST_SHARE))
        memory_request_mi = max(256, math.floor(self.memory_gib * 1024 * _REQUEST_SHARE))
        memory_limit_mi = math.floor(self.memory_gib * 1024)
        requests = {"cpu": f"{cpu_request_m}m", "memory": f"{memory_request_mi}Mi"}
        limits = {"cpu": f"{math.floor(self.vcpu * 1000)}m", "memory": f"{memory_limit_mi}Mi"}
        if self.gpu_count:
            requests["nvidia.com/gpu"] = str(self.gpu_count)
            limits["nvidia.com/gpu"] = str(self.gpu_count)
        return {"requests": requests, "limits": limits}


class InstanceCatalog:
    """A name -> :class:`InstanceType` table."""

    def __init__(self, types: Mapping[str, InstanceType]) -> None:
        self._types = dict(types)
        # Azure matches VM sizes case-insensitively (STANDARD_NC4AS_T4_V3 == Standard_NC4as_T4_v3).
        self._folded = {name.casefold(): name for name in self._types}

    @classmethod
    def default(cls) -> InstanceCatalog:
        """The shipped catalog (cached: it is read once per process)."""
        return _default_catalog()

    @classmethod
    def for_project(cls, root: Path) -> InstanceCatalog:
        """The shipped catalog extended by ``root/instance_types.yml`` when that file exists."""
        extra = root / PROJECT_CATALOG_FILE
        base = cls.default()
        return base.extended(extra) if extra.is_file() else base

    def extended(self, path: Path) -> InstanceCatalog:
        """A copy of this catalog with the types of ``path`` added (same names override)."""
        types = dict(self._types)
        types.update(_read_catalog_file(safe_yaml.read_text(path), str(path)))
        return InstanceCatalog(types)

    def names(self) -> list[str]:
        """Every known name, sorted."""
        return sorted(self._types)

    def canonical(self, name: str) -> str | None:
        """The catalog's spelling of ``name`` (matched case-insensitively, as Azure does), or ``None``."""
        if name in self._types:
            return name
        return self._folded.get(name.casefold())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) is not None

    def get(self, name: str) -> InstanceType:
        """Look a type up (case-insensitively).

        Raises:
            KeyError: the name is unknown; the message lists the known names.
        """
        canonical = self.canonical(name)
        if canonical is None:
            raise KeyError(unknown_instance_type_message(name, self.names()))
        return self._types[canonical]

    def values(self) -> Iterable[InstanceType]:
        """Every instance type."""
        return self._types.values()


def unknown_instance_type_message(name: str, known: list[str]) -> str:
    """The error text for an unknown instance type."""
    return f"unknown instance type {name!r}; known types: {', '.join(known)}"


def _read_catalog_file(text: str, source: str) -> dict[str, InstanceType]:
    safe_yaml.check_bounds(text, source)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError([Problem(source, None, "", f"not valid YAML: {e}")]) from e
    table = doc.get("instance_types") if isinstance(doc, dict) else None
    if not isinstance(table, dict):
        raise SpecError([Problem(source, None, "instance_types", "expected a mapping of name -> instance type")])
    out: dict[str, InstanceType] = {}
    problems: list[Problem] = []
    for name, fields in table.items():
        try:
            out[str(name)] = InstanceType.model_validate({"name": str(name), **(fields or {})})
        except (ValidationError, TypeError) as e:
            problems.append(Problem(source, None, f"instance_types.{name}", str(e).splitlines()[0]))
    if problems:
        raise SpecError(problems)
    return out


@cache
def _default_catalog() -> InstanceCatalog:
    text = resources.files("endpoints").joinpath("data/instance_types.yaml").read_text(encoding="utf-8")
    return InstanceCatalog(_read_catalog_file(text, "endpoints/data/instance_types.yaml"))


def catalog_from_any(value: Any) -> InstanceCatalog:
    """Return ``value`` if it is a catalog, else the default one (used with pydantic validation contexts)."""
    return value if isinstance(value, InstanceCatalog) else InstanceCatalog.default()
