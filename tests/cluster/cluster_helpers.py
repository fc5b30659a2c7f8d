"""Helpers of the end-to-end tests: one throwaway cluster per session (``endpoints cluster up``, the real CLI),
the Pulumi CLI on a file backend with passphrase secrets, and a copy of the repository to run stacks from.

The tests marked ``cluster`` skip, naming what is missing, when the toolchain (``$ENDPOINTS_TOOLCHAIN_DIR/bin``,
default ``.toolchain/bin``) lacks a binary; CI builds it first. The cluster is stopped by pid at the end of the
session even when a test fails, and, should ``endpoints cluster down`` fail, each recorded pid is killed directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from endpoints.cluster.lifecycle import toolchain_dir

REPO = Path(__file__).resolve().parents[2]
ENDPOINTS = str(Path(sys.executable).parent / "endpoints")
# The engine, its language host, its plugin for Python dynamic resources (the endpoint keys) and the provider.
PULUMI_BINARIES = ("pulumi", "pulumi-language-python", "pulumi-resource-pulumi-python", "pulumi-resource-kubernetes")
PASSPHRASE = "e2e-only-passphrase"
PART_OF = "app.kubernetes.io/part-of=ml-endpoints"
# A test-only stack with a Triton and a custom-container (BYOC) deployment (fixtures/custom_servers).
CUSTOM_SERVERS = "custom-servers"
CUSTOM_SERVERS_DIR = Path(__file__).resolve().parent / "fixtures" / "custom_servers"


def _missing(names: tuple[str, ...]) -> list[str]:
    bin_dir = toolchain_dir(REPO) / "bin"
    return [n for n in names if not os.access(bin_dir / n, os.X_OK)]


def require(names: tuple[str, ...]) -> None:
    """Skip the test when a toolchain binary is missing (naming it and where it was looked for)."""
    missing = _missing(names)
    if missing:
        pytest.skip(f"toolchain lacks {', '.join(missing)} in {toolchain_dir(REPO) / 'bin'} (scripts/toolchain.sh)")


def require_crds() -> None:
    """Skip the test when the toolchain lacks the Prometheus Operator's or kwok's CRDs (``cluster up`` refuses to
    start)."""
    from endpoints.cluster.objects import (
        KWOK_CRD_COMMAND,
        TOOLCHAIN_CRD_COMMAND,
        missing_kwok_crds,
        missing_toolchain_crds,
    )

    for folder, missing_in, command in (
        ("crds", missing_toolchain_crds, TOOLCHAIN_CRD_COMMAND),
        ("kwok-crds", missing_kwok_crds, KWOK_CRD_COMMAND),
    ):
        crd_dir = toolchain_dir(REPO) / folder
        missing = missing_in(crd_dir)
        if missing:
            pytest.skip(f"toolchain lacks {', '.join(missing)} in {crd_dir} ({command})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """The session's cluster."""

    state_dir: Path
    kubeconfig: Path

    def client(self) -> Any:
        from endpoints.cluster.apply import dynamic_client

        return dynamic_client(self.kubeconfig)


def _kill_recorded(state_dir: Path) -> None:
    """Last resort after a failed ``down``: SIGKILL every pid the state file records."""
    path = state_dir / "state.json"
    if not path.is_file():
        return
    for p in json.loads(path.read_text()).get("processes", []):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p["pid"], signal.SIGKILL)


@dataclass
class Project:
    """A copy of the repository (stack files get edited and salted) with the Pulumi CLI's environment."""

    root: Path
    env: dict[str, str]

    def run(
        self, *argv: str, timeout: int = 600, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the copy; ``check`` fails the test with the command's output tail.

        The command runs in a session of its own, killed as a whole when it ends, times out or the test is
        interrupted: the engine's plugins (providers, the dynamic provider, the policy pack) are its children and
        must not outlive a killed ``pulumi``.
        """
        child = subprocess.Popen(
            list(argv),
            cwd=self.root,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        proc = subprocess.CompletedProcess(list(argv), child.returncode, stdout, stderr)
        if check and proc.returncode != 0:
            pytest.fail(f"`{' '.join(argv)}` exited {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
        return proc

    def pulumi(self, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``pulumi ARGS --non-interactive``."""
        return self.run("pulumi", *args, "--non-interactive", timeout=timeout, check=check)


def pulumi_env(backend: Path, kubeconfig: Path | None) -> dict[str, str]:
    """The toolchain on PATH first, a file backend, passphrase secrets, no update check or plugin download."""
    tc = toolchain_dir(REPO)
    home = Path(os.environ.get("PULUMI_HOME") or tc / "pulumi-home")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(tc / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PULUMI_HOME": str(home),
        "PULUMI_BACKEND_URL": backend.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "1",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "ENDPOINTS_TOOLCHAIN_DIR": str(tc),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def copy_repo(dest: Path) -> Path:
    """The repository without tests, benchmarks, git and venv (the venv is linked: Pulumi.yaml names .venv)."""
    skip = shutil.ignore_patterns(
        ".git", "__pycache__", ".hypothesis", "bench", "tests", ".toolchain", ".endpoints", "plan"
    )

    def ignore(folder: str, names: list[str]) -> set[str]:
        return set(skip(folder, names)) | ({".venv"} if Path(folder) == REPO else set())

    # symlinks=True keeps stacks/.venv -> ../.venv (the dynamic provider's virtualenv, see stacks/.venv).
    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


def install_custom_servers(root: Path) -> Path:
    """Put the custom-servers stack into the project ``root``: its stack file in ``stacks/`` and its endpoint folder
    where the stack file names it (the same path as in this repository). A folder with no Pulumi.yaml gets this
    repository's (enough for ``endpoints plan --project``)."""
    if not (root / "Pulumi.yaml").is_file():
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    (root / "stacks").mkdir(exist_ok=True)
    shutil.copy(CUSTOM_SERVERS_DIR / f"Pulumi.{CUSTOM_SERVERS}.yaml", root / "stacks")
    endpoint = CUSTOM_SERVERS_DIR / "vision"
    shutil.copytree(endpoint, root / endpoint.relative_to(REPO), dirs_exist_ok=True)
    return root


def manifests_in(folder: Path) -> list[dict[str, Any]]:
    """The objects of ``endpoints plan --out folder`` (one YAML manifest each)."""
    return [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))]


def get_object(client: Any, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """The server's object (a dynamic client's ``get``, as a dict)."""
    res = client.resources.get(api_version=api_version, kind=kind)
    return res.get(name=name, namespace=namespace).to_dict()


def list_objects(
    client: Any, api_version: str, kind: str, namespace: str | None = None, **kw: Any
) -> list[dict[str, Any]]:
    """The server's objects of a kind (``kw``: e.g. ``label_selector``)."""
    res = client.resources.get(api_version=api_version, kind=kind)
    return res.get(namespace=namespace, **kw).to_dict()["items"]


def labelled_objects(client: Any, label_selector: str, wait_s: float) -> list[str]:
    """Every object (of every listable kind but events) that carries the labels, as ``Kind namespace/name``.

    Objects of a deleted namespace go with it and the namespace controller takes a moment: a kind still listing
    some is polled again until ``wait_s`` has passed since the call."""
    left = []
    deadline = time.monotonic() + wait_s
    for res in client.resources.search(verbs=["list"]):
        if res.subresource or "list" not in (res.verbs or []) or res.group in ("events.k8s.io",) or res.kind == "Event":
            continue
        while True:
            items = res.get(label_selector=label_selector).to_dict().get("items", [])
            if not items or time.monotonic() > deadline:
                break
            time.sleep(1)
        left += [f"{res.kind} {i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in items]
    return left


def contains(live: Any, want: Any, path: str = "") -> list[str]:
    """Where ``live`` (the server's object) differs from ``want`` (the builder's): every rendered field must be there
    with the same value; fields the server adds (defaults, status) are ignored. A zero value (0, false, "", [], {})
    the server leaves out counts as there: the API's JSON omits empty fields (``omitempty``)."""
    if live is None and isinstance(want, bool | int | float | str | list | dict) and not want:
        return []
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [f"{path}: got {live!r}"]
        return [d for k, v in want.items() for d in contains(live.get(k), v, f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [f"{path}: got {live!r}, want {want!r}"]
        return [d for i, (a, b) in enumerate(zip(live, want, strict=True)) for d in contains(a, b, f"{path}[{i}]")]
    if live != want and str(live) != str(want) and not _same_quantity(live, want):
        return [f"{path}: got {live!r}, want {want!r}"]
    return []


def _same_quantity(a: Any, b: Any) -> bool:
    """``"4000m"`` and ``"4"`` are one quantity (the API server stores the canonical form)."""
    from kubernetes.utils.quantity import parse_quantity

    try:
        return bool(parse_quantity(a) == parse_quantity(b))
    except (ValueError, TypeError):
        return False


def evaluate_if(condition: str, inputs: dict[str, str], env: dict[str, str]) -> bool:
    """A GitHub Actions `if:` of the forms promote.yml uses (==, !=, &&, ||, inputs.X, env.X, 'text')."""
    expr = condition.strip().removeprefix("${{").removesuffix("}}")
    expr = re.sub(r"\binputs\.(\w+)", lambda m: repr(inputs.get(m.group(1), "")), expr)
    expr = re.sub(r"\benv\.(\w+)", lambda m: repr(env.get(m.group(1), "")), expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    return bool(eval(expr, {"__builtins__": {}}))  # our own workflow file, reduced to literals and operators


def workflow_steps(path: Path, inputs: dict[str, str], env: dict[str, str]) -> list[dict[str, Any]]:
    """The `run:` steps of promote.yml's job that run for these inputs, `${{ inputs.X }}` substituted.

    Left out: steps with no `run:` (checkout, setup, the Pulumi action), `Install` (the venv is made), `Kubeconfig`
    (the cluster's is exported) and the git commit (no remote here).
    """
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for step in workflow["jobs"]["promote"]["steps"]:
        if not step.get("run") or step["name"] in ("Install", "Kubeconfig", "Commit the promoted stack file"):
            continue
        if "if" in step and not evaluate_if(step["if"], inputs, env):
            continue
        script = re.sub(r"\$\{\{\s*inputs\.(\w+)\s*\}\}", lambda m: inputs[m.group(1)], step["run"])
        out.append({"name": step["name"], "run": script})
    return out
