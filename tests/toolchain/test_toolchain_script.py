"""scripts/toolchain.sh: its versions file, its listing and its errors (nothing here builds anything)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "toolchain.sh"
VERSIONS = ROOT / "toolchain" / "versions.env"
BINARIES = [
    "pulumi",
    "pulumi-language-python",
    "pulumi-resource-pulumi-python",
    "pulumi-resource-kubernetes",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kwok",
    "kube-scheduler",
]
CRDS = "prometheus-operator-crds"  # not a binary: the Prometheus Operator's CRDs, copied into <toolchain>/crds
KWOK_CRDS = "kwok-crds"  # nor this: kwok's Logs and ClusterLogs CRDs, copied into <toolchain>/kwok-crds
ITEMS = [CRDS, KWOK_CRDS, *BINARIES]  # the CRDs first (a copy: seconds)


def read_versions(path: Path = VERSIONS) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=([^\s'\"$`]+)", line)
        assert match, f"{path}:{number}: not a plain KEY=value line: {line!r}"
        values[match[1]] = match[2]
    return values


def toolchain(*args: str, tmp_path: Path, versions: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc")}
    if versions is not None:
        env["ENDPOINTS_TOOLCHAIN_VERSIONS"] = str(versions)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_versions_file_lists_every_binary_with_exact_versions() -> None:
    versions = read_versions()
    assert versions["TOOLCHAIN_BINARIES"].split(",") == BINARIES
    keys = (
        "PULUMI_VERSION",
        "PULUMI_KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KUBERNETES_VERSION",
        "KWOK_VERSION",
        "PROMETHEUS_OPERATOR_VERSION",
    )
    for key in keys:
        assert re.fullmatch(r"\d+\.\d+\.\d+", versions[key]), f"{VERSIONS}: {key}: got {versions[key]!r}"
    assert re.fullmatch(r"v4\.0\.0-\d{14}-[0-9a-f]{12}", versions["PULUMI_KUBERNETES_MODULE_VERSION"])


def test_pyproject_pins_the_sdks_of_the_built_engine_and_provider() -> None:
    versions = read_versions()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["pulumi"]
    assert f"pulumi=={versions['PULUMI_VERSION']}" in deps
    assert f"pulumi-kubernetes=={versions['PULUMI_KUBERNETES_VERSION']}" in deps


def test_list_names_every_binary_its_version_and_state(tmp_path: Path) -> None:
    versions = read_versions()
    expected_version = {
        "pulumi": versions["PULUMI_VERSION"],
        "pulumi-language-python": versions["PULUMI_VERSION"],
        "pulumi-resource-pulumi-python": versions["PULUMI_VERSION"],
        "pulumi-resource-kubernetes": versions["PULUMI_KUBERNETES_VERSION"],
        "etcd": versions["ETCD_VERSION"],
        "kube-apiserver": versions["KUBERNETES_VERSION"],
        "kube-controller-manager": versions["KUBERNETES_VERSION"],
        "kwok": versions["KWOK_VERSION"],
        "kube-scheduler": versions["KUBERNETES_VERSION"],
        CRDS: versions["PROMETHEUS_OPERATOR_VERSION"],
        KWOK_CRDS: versions["KWOK_VERSION"],
    }
    bin_dir = tmp_path / "tc" / "bin"
    crd_dir = tmp_path / "tc" / "crds"
    # One of the two CRD files is not a complete install: missing, not stale.
    crd_dir.mkdir(parents=True)
    (crd_dir / "monitoring.coreos.com_podmonitors.yaml").write_text("kind: CustomResourceDefinition\n")
    bin_dir.mkdir(parents=True)
    # A binary whose stamp names another version is stale, not built.
    (bin_dir / "etcd").write_text("#!/bin/sh\n")
    (bin_dir / "etcd").chmod(0o755)
    (bin_dir / ".etcd.stamp").write_text("go.etcd.io/etcd/server/v3@v3.0.0 3.0.0 0000000000000000\n")
    result = toolchain("list", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"{CRDS} {expected_version[CRDS]} {crd_dir} missing",
        f"{KWOK_CRDS} {expected_version[KWOK_CRDS]} {tmp_path / 'tc' / 'kwok-crds'} missing",
    ] + [
        f"{name} {expected_version[name]} {bin_dir / name} {'stale' if name == 'etcd' else 'missing'}"
        for name in BINARIES
    ]


def test_check_names_what_is_missing(tmp_path: Path) -> None:
    result = toolchain("check", tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"toolchain: not built (or stale) in {tmp_path / 'tc'}: {' '.join(ITEMS)}; run scripts/toolchain.sh\n"
    )


def test_env_puts_the_binaries_first_on_path_and_pins_the_plugins(tmp_path: Path) -> None:
    result = toolchain("env", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    tc = tmp_path / "tc"
    assert f'export PATH="{tc}/bin:$PATH"' in result.stdout.splitlines()
    assert f'export PULUMI_HOME="{tc}/pulumi-home"' in result.stdout.splitlines()
    assert "export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true" in result.stdout.splitlines()
    out = subprocess.run(
        ["bash", "-c", 'eval "$1"; echo "$PATH"; echo "$PULUMI_SKIP_UPDATE_CHECK"', "_", result.stdout],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith(f"{tc}/bin:")
    assert out[1] == "1"


def test_unknown_binary_is_refused_before_any_build(tmp_path: Path) -> None:
    result = toolchain("build", "kubectl", tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"toolchain: unknown binary 'kubectl' (known: {' '.join(ITEMS)})\n"
    assert not (tmp_path / "tc").exists()


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the go command")
def test_a_refused_module_fails_in_one_line_naming_binary_module_version_and_step(tmp_path: Path) -> None:
    versions = tmp_path / "versions.env"
    kwok = read_versions()["KWOK_VERSION"]
    versions.write_text(VERSIONS.read_text().replace(f"KWOK_VERSION={kwok}", "KWOK_VERSION=0.0.1"))
    result = subprocess.run(
        ["bash", str(SCRIPT), "build", "kwok"],
        env={
            **os.environ,
            "GOPROXY": "off",  # the proxy refuses at once, offline
            "GOMODCACHE": str(tmp_path / "modcache"),
            "ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc"),
            "ENDPOINTS_TOOLCHAIN_VERSIONS": str(versions),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    log = tmp_path / "tc" / "logs" / "kwok.log"
    assert result.stderr.splitlines()[-1] == (
        "toolchain: kwok: sigs.k8s.io/kwok@v0.0.1: download failed: "
        "go: sigs.k8s.io/kwok@v0.0.1: module lookup disabled by GOPROXY=off "
        f"(log: {log})"
    )
    assert not (tmp_path / "tc" / "bin" / "kwok").exists()


def _sdk_in_module_cache() -> bool:
    if shutil.which("go") is None:
        return False
    spec = f"github.com/pulumi/pulumi/sdk/v3@v{read_versions()['PULUMI_VERSION']}"
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod"}
    return subprocess.run(["go", "mod", "download", spec], env=env, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _sdk_in_module_cache(), reason="needs go and sdk/v3 in the module cache (offline test)")
def test_the_dynamic_provider_plugin_is_installed_from_the_sdk_release(tmp_path: Path) -> None:
    env = {**os.environ, "GOPROXY": "off", "ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc")}
    argv = ["bash", str(SCRIPT), "build", "pulumi-resource-pulumi-python"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    plugin = tmp_path / "tc" / "bin" / "pulumi-resource-pulumi-python"
    assert os.access(plugin, os.X_OK)
    assert '"${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic $@' in plugin.read_text()
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.stdout == (
        f"toolchain: pulumi-resource-pulumi-python {read_versions()['PULUMI_VERSION']} is built ({plugin})\n"
    )


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the go command")
def test_a_refused_crd_module_fails_in_one_line_naming_module_version_and_step(tmp_path: Path) -> None:
    versions = tmp_path / "versions.env"
    pinned = read_versions()["PROMETHEUS_OPERATOR_VERSION"]
    versions.write_text(
        VERSIONS.read_text().replace(f"PROMETHEUS_OPERATOR_VERSION={pinned}", "PROMETHEUS_OPERATOR_VERSION=0.0.1")
    )
    env = {**os.environ, "GOPROXY": "off", "GOMODCACHE": str(tmp_path / "modcache")}
    result = subprocess.run(
        ["bash", str(SCRIPT), "build", CRDS],
        env={**env, "ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc"), "ENDPOINTS_TOOLCHAIN_VERSIONS": str(versions)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    module = "github.com/prometheus-operator/prometheus-operator@v0.0.1"
    assert result.stderr.splitlines()[-1] == (
        f"toolchain: {CRDS}: {module}: download failed: go: {module}: module lookup disabled by GOPROXY=off "
        f"(log: {tmp_path / 'tc' / 'logs' / f'{CRDS}.log'})"
    )
    assert not (tmp_path / "tc" / "crds").exists()


def _in_module_cache(spec: str) -> bool:
    if shutil.which("go") is None:
        return False
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod"}
    return subprocess.run(["go", "mod", "download", spec], env=env, capture_output=True, check=False).returncode == 0


PROMETHEUS_OPERATOR = (
    f"github.com/prometheus-operator/prometheus-operator@v{read_versions()['PROMETHEUS_OPERATOR_VERSION']}"
)


@pytest.mark.skipif(not _in_module_cache(PROMETHEUS_OPERATOR), reason=f"needs go and {PROMETHEUS_OPERATOR} cached")
def test_the_prometheus_operator_crds_are_installed_unchanged_stamped_and_checked(tmp_path: Path) -> None:
    import yaml

    from endpoints.cluster.objects import TOOLCHAIN_CRD_FILES

    env = {**os.environ, "GOPROXY": "off", "ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc")}
    argv = ["bash", str(SCRIPT), "build", CRDS]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    crd_dir = tmp_path / "tc" / "crds"
    assert sorted(p.name for p in crd_dir.iterdir()) == [f".{CRDS}.stamp", *TOOLCHAIN_CRD_FILES]
    source = subprocess.run(
        ["go", "mod", "download", "-json", PROMETHEUS_OPERATOR], env=env, capture_output=True, text=True, check=True
    )
    upstream = Path(json.loads(source.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    for name in TOOLCHAIN_CRD_FILES:
        assert (crd_dir / name).read_bytes() == (upstream / name).read_bytes()
        doc = yaml.safe_load((crd_dir / name).read_text())
        assert (doc["kind"], doc["spec"]["group"]) == ("CustomResourceDefinition", "monitoring.coreos.com")
    assert (crd_dir / f".{CRDS}.stamp").read_text().startswith(f"{PROMETHEUS_OPERATOR} ")
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.stdout == f"toolchain: {CRDS} {read_versions()['PROMETHEUS_OPERATOR_VERSION']} is built ({crd_dir})\n"
    listed = subprocess.run(["bash", str(SCRIPT), "list"], env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines()[0].endswith(f"{crd_dir} built")
    # A file gone: stale, and `check` names it; a build puts it back.
    (crd_dir / TOOLCHAIN_CRD_FILES[1]).unlink()
    listed = subprocess.run(["bash", str(SCRIPT), "list"], env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines()[0].endswith(f"{crd_dir} missing")
    check = subprocess.run(["bash", str(SCRIPT), "check"], env=env, capture_output=True, text=True, check=False)
    assert check.returncode == 1
    assert check.stderr.startswith(f"toolchain: not built (or stale) in {tmp_path / 'tc'}: {CRDS} ")
    rebuilt = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (crd_dir / TOOLCHAIN_CRD_FILES[1]).read_bytes() == (upstream / TOOLCHAIN_CRD_FILES[1]).read_bytes()


KWOK = f"sigs.k8s.io/kwok@v{read_versions()['KWOK_VERSION']}"


@pytest.mark.skipif(not _in_module_cache(KWOK), reason=f"needs go and {KWOK} cached")
def test_the_kwok_crds_are_installed_unchanged_beside_the_prometheus_ones(tmp_path: Path) -> None:
    import yaml

    from endpoints.cluster.objects import KWOK_CRD_FILES, missing_kwok_crds

    env = {**os.environ, "GOPROXY": "off", "ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc")}
    argv = ["bash", str(SCRIPT), "build", KWOK_CRDS]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    crd_dir = tmp_path / "tc" / "kwok-crds"
    assert sorted(p.name for p in crd_dir.iterdir()) == sorted([f".{KWOK_CRDS}.stamp", *KWOK_CRD_FILES])
    assert missing_kwok_crds(crd_dir) == []
    source = subprocess.run(
        ["go", "mod", "download", "-json", KWOK], env=env, capture_output=True, text=True, check=True
    )
    upstream = Path(json.loads(source.stdout)["Dir"]) / "kustomize" / "crd" / "bases"
    for name in KWOK_CRD_FILES:
        assert (crd_dir / name).read_bytes() == (upstream / name).read_bytes()
        doc = yaml.safe_load((crd_dir / name).read_text())
        assert (doc["kind"], doc["spec"]["group"]) == ("CustomResourceDefinition", "kwok.x-k8s.io")
    assert not (tmp_path / "tc" / "crds").exists()  # the Prometheus Operator's folder is another item's
    listed = subprocess.run(["bash", str(SCRIPT), "list"], env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines()[1] == f"{KWOK_CRDS} {read_versions()['KWOK_VERSION']} {crd_dir} built"
    (crd_dir / KWOK_CRD_FILES[0]).unlink()
    assert missing_kwok_crds(crd_dir) == [KWOK_CRD_FILES[0]]
    listed = subprocess.run(["bash", str(SCRIPT), "list"], env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines()[1].endswith(f"{crd_dir} missing")
