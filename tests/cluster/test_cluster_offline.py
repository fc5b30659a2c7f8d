"""`endpoints cluster` without a toolchain: its checks, its certificates, the stand-in scheduler's predicates, and
that a start that fails half-way leaves no process behind (stub binaries are real processes)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from endpoints.cli.main import build_app
from endpoints.cluster import ClusterError, binder, objects, pki
from endpoints.cluster.lifecycle import REQUIRED_BINARIES, ClusterState, Ports, alive, down, up

runner = CliRunner()


def _stub_toolchain(
    root: Path, scripts: dict[str, str] | None = None, crds: bool = True, kwok_crds: bool = True
) -> Path:
    """A bin/ folder whose binaries are shell scripts (default: sleep until killed), and crds/ and kwok-crds/ beside
    it (files that are never applied: every test here stops before the API server)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name in REQUIRED_BINARIES:
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + (scripts or {}).get(name, "exec sleep 300\n"), encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    if crds:
        (root / "crds").mkdir()
        for name in objects.TOOLCHAIN_CRD_FILES:
            (root / "crds" / name).write_text("kind: CustomResourceDefinition\n", encoding="utf-8")
    if kwok_crds:
        (root / "kwok-crds").mkdir()
        for name in objects.KWOK_CRD_FILES:
            (root / "kwok-crds" / name).write_text("kind: CustomResourceDefinition\n", encoding="utf-8")
    return bin_dir


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ports() -> Ports:
    a, e, p, k = _free_ports(4)
    return Ports(apiserver=a, etcd=e, etcd_peer=p, kwok=k)


def test_missing_binaries_are_named_and_nothing_starts(tmp_path: Path) -> None:
    (tmp_path / "tc" / "bin").mkdir(parents=True)
    assert (
        f"cluster up failed: {tmp_path / 'tc' / 'bin'}: missing etcd, kube-apiserver, kube-controller-manager, kwok; "
        "build the toolchain (scripts/toolchain.sh) or point ENDPOINTS_TOOLCHAIN_DIR at a folder whose bin/ holds "
        "them. Nothing was started."
    ) in _refused_up(tmp_path)


def _refused_up(tmp_path: Path) -> str:
    """``cluster up`` with the toolchain at ``tmp_path/tc``: it fails, starts nothing; its error, unwrapped."""
    result = runner.invoke(
        build_app(),
        ["cluster", "up", "--state-dir", str(tmp_path / "state")],
        env={"ENDPOINTS_TOOLCHAIN_DIR": str(tmp_path / "tc")},
    )
    assert result.exit_code == 1
    assert not (tmp_path / "state" / "state.json").exists()
    assert not (tmp_path / "state" / "pki").exists()
    return result.stderr.replace("\n", "")


def test_missing_prometheus_operator_crds_are_named_with_the_command_and_nothing_starts(tmp_path: Path) -> None:
    _stub_toolchain(tmp_path / "tc", crds=False)
    (tmp_path / "tc" / "crds").mkdir()
    (tmp_path / "tc" / "crds" / "monitoring.coreos.com_podmonitors.yaml").write_text("{}", encoding="utf-8")
    assert (
        f"cluster up failed: {tmp_path / 'tc' / 'crds'}: missing monitoring.coreos.com_prometheusrules.yaml (the "
        "Prometheus Operator's CRDs, for stacks with ml-endpoints:monitoring); install them with "
        "`scripts/toolchain.sh build prometheus-operator-crds`. Nothing was started."
    ) in _refused_up(tmp_path)


def test_missing_kwok_crds_are_named_with_the_command_and_nothing_starts(tmp_path: Path) -> None:
    _stub_toolchain(tmp_path / "tc", kwok_crds=False)
    assert (
        f"cluster up failed: {tmp_path / 'tc' / 'kwok-crds'}: missing kwok.x-k8s.io_logs.yaml, "
        "kwok.x-k8s.io_clusterlogs.yaml (kwok's Logs CRDs, for pod logs); install them with "
        "`scripts/toolchain.sh build kwok-crds`. Nothing was started."
    ) in _refused_up(tmp_path)


def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    bin_dir = _stub_toolchain(tmp_path / "tc")
    ports = _ports()
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports.etcd))
        held.listen()
        with pytest.raises(ClusterError) as e:
            up(tmp_path / "state", bin_dir, ports, timeout_s=5)
    assert str(e.value) == (
        f"port taken: 127.0.0.1:{ports.etcd} (etcd); stop what listens there or pick other ports "
        "(--apiserver-port, --etcd-port, --kwok-port). Nothing was started."
    )
    assert not (tmp_path / "state" / "state.json").exists()


def test_a_component_that_exits_stops_everything_started_before(tmp_path: Path) -> None:
    """etcd (a stub that never answers /health) is up; the wait times out; etcd is stopped by pid."""
    bin_dir = _stub_toolchain(tmp_path / "tc")
    state_dir = tmp_path / "state"
    with pytest.raises(TimeoutError, match="etcd /health: not done within 2 s"):
        up(state_dir, bin_dir, _ports(), timeout_s=2)
    state = ClusterState.load(state_dir)
    assert state is not None and state.processes == []  # all stopped, and recorded as such
    log = state_dir / "logs" / "etcd.log"
    assert log.is_file()


def test_an_exiting_component_reports_its_log(tmp_path: Path) -> None:
    bin_dir = _stub_toolchain(tmp_path / "tc", {"etcd": "echo 'etcd: bad flag --nope' >&2; exit 2\n"})
    with pytest.raises(ClusterError) as e:
        up(tmp_path / "state", bin_dir, _ports(), timeout_s=30)
    assert str(e.value).startswith(
        f"etcd exited while starting; its log ({tmp_path / 'state' / 'logs' / 'etcd.log'}) ends:"
    )
    assert str(e.value).endswith("etcd: bad flag --nope")


def test_down_stops_recorded_processes_by_pid(tmp_path: Path) -> None:
    """A state file as `up` writes it, over two real processes: `down` stops both and removes the state."""
    from endpoints.cluster.lifecycle import spawn

    state_dir = tmp_path / "state"
    (state_dir / "logs").mkdir(parents=True)
    records = [spawn(n, ["/bin/sleep", "300"], state_dir / "logs", dict(os.environ)) for n in ("etcd", "kwok")]
    ClusterState(
        str(state_dir), "https://127.0.0.1:1", str(state_dir / "admin.kubeconfig"), {}, "binder", records
    ).save()
    assert all(alive(r) for r in records)
    result = runner.invoke(build_app(), ["cluster", "status", "--state-dir", str(state_dir), "--json"])
    assert result.exit_code == 1  # no API server in this state: not healthy
    report = json.loads(result.stdout)
    assert {n: p["running"] for n, p in report["processes"].items()} == {"etcd": True, "kwok": True}
    assert down(state_dir) == ["kwok", "etcd"]
    assert not any(alive(r) for r in records)
    assert not (state_dir / "state.json").exists()
    result = runner.invoke(build_app(), ["cluster", "down", "--state-dir", str(state_dir)])
    assert result.exit_code == 1
    assert f"cluster down: {state_dir}: no cluster here (no state.json); nothing to stop" in result.stderr.replace(
        "\n", ""
    )


def test_up_refuses_while_a_cluster_runs_from_the_state_dir(tmp_path: Path) -> None:
    from endpoints.cluster.lifecycle import spawn

    state_dir = tmp_path / "state"
    (state_dir / "logs").mkdir(parents=True)
    rec = spawn("etcd", ["/bin/sleep", "300"], state_dir / "logs", dict(os.environ))
    ClusterState(str(state_dir), "https://127.0.0.1:1", "k", {}, "binder", [rec]).save()
    try:
        with pytest.raises(ClusterError, match=r"a cluster already runs from here \(etcd \(pid \d+\)\)"):
            up(state_dir, _stub_toolchain(tmp_path / "tc"), _ports(), timeout_s=5)
    finally:
        down(state_dir)
    assert not alive(rec)


def test_certificates_chain_to_the_ca_and_keys_are_private(tmp_path: Path) -> None:
    keys = pki.generate(tmp_path / "pki", (("admin", pki.ADMIN),))
    ca = x509.load_pem_x509_certificate(keys.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(keys.cert("apiserver").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    admin = x509.load_pem_x509_certificate(keys.cert("admin").read_bytes())
    admin.verify_directly_issued_by(ca)
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:masters"]
    for key in (keys.ca_key, keys.key("admin"), keys.sa_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def _node(name: str, labels: dict, taints: list | None = None, alloc: dict | None = None, ready: bool = True) -> dict:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints or []},
        "status": {
            "allocatable": alloc or {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def _pod(requests: dict, node_selector: dict | None = None, tolerations: list | None = None) -> dict:
    return {
        "spec": {
            "containers": [{"name": "c", "resources": {"requests": requests}}],
            "nodeSelector": node_selector or {},
            "tolerations": tolerations or [],
        }
    }


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CPU = _node("cpu-0", {"ml-endpoints.io/pool": "cpu"})
GPU = _node(
    "gpu-0",
    {"ml-endpoints.io/pool": "gpu-t4"},
    [objects.GPU_TAINT],
    {"cpu": "32", "memory": "128Gi", "pods": "110", "nvidia.com/gpu": "4"},
)


@pytest.mark.parametrize(
    ("pod", "nodes", "used", "expected"),
    [
        pytest.param(_pod({"cpu": "1"}), [CPU, GPU], {}, "cpu-0", id="untolerated-gpu-taint"),
        pytest.param(
            _pod({"nvidia.com/gpu": "1"}, {"ml-endpoints.io/pool": "gpu-t4"}),
            [CPU, GPU],
            {},
            None,
            id="gpu-pod-without-toleration",
        ),
        pytest.param(
            _pod({"nvidia.com/gpu": "1"}, {"ml-endpoints.io/pool": "gpu-t4"}, [GPU_TOLERATION]),
            [CPU, GPU],
            {},
            "gpu-0",
            id="gpu-pod",
        ),
        pytest.param(
            _pod({"nvidia.com/gpu": "1"}, {"ml-endpoints.io/pool": "gpu-t4"}, [GPU_TOLERATION]),
            [GPU],
            {"gpu-0": {"nvidia.com/gpu": 4.0, "pods": 4.0}},
            None,
            id="gpus-used-up",
        ),
        pytest.param(
            _pod({"cpu": "3400m", "memory": "12Gi"}), [CPU], {"cpu-0": {"cpu": 30.0, "pods": 1.0}}, None, id="cpu-full"
        ),
        pytest.param(
            _pod({"cpu": "1"}),
            [_node("a", {}), _node("b", {})],
            {"a": {"cpu": 8.0, "pods": 1.0}},
            "b",
            id="least-loaded",
        ),
        pytest.param(_pod({"cpu": "1"}), [_node("a", {}, ready=False)], {}, None, id="not-ready"),
    ],
)
def test_binder_predicates(pod: dict, nodes: list, used: dict, expected: str | None) -> None:
    assert binder.choose_node(pod, nodes, used) == expected


def test_fake_nodes_cover_every_pool_of_the_catalog() -> None:
    from endpoints.catalog import InstanceCatalog

    nodes = objects.node_objects()
    pools = {n["metadata"]["labels"][objects.POOL_LABEL] for n in nodes}
    assert pools == {it.pool for it in InstanceCatalog.default().values()}
    for it in InstanceCatalog.default().values():  # every instance type fits on a node of its pool
        pod = {
            "spec": {
                "containers": [{"name": "c", "resources": it.kubernetes_resources()}],
                "nodeSelector": {objects.POOL_LABEL: it.pool},
                "tolerations": [GPU_TOLERATION] if it.is_gpu else [],
            }
        }
        ready = [{**n, "status": {**n["status"], "conditions": [{"type": "Ready", "status": "True"}]}} for n in nodes]
        assert binder.choose_node(pod, ready, {}) is not None, it.name


def test_binder_module_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Its entry point parses arguments (no API server needed to fail cleanly on a missing kubeconfig)."""
    proc = subprocess.run(
        [sys.executable, "-m", "endpoints.cluster.binder"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert "the following arguments are required: --kubeconfig" in proc.stderr


# ------------------------------------------------------------------------- helpers of the end-to-end tests


def test_object_comparison_reports_each_difference_and_ignores_server_defaults() -> None:
    from cluster_helpers import contains

    want = {
        "spec": {"replicas": 3, "template": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "4000m"}}}]}}
    }
    live = {
        "spec": {
            "replicas": 3,
            "progressDeadlineSeconds": 600,
            "template": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "4"}}}]},
        }
    }
    assert contains(live, want) == []
    live["spec"]["replicas"] = 2
    live["spec"]["template"]["containers"][0]["resources"]["limits"]["cpu"] = "3"
    assert contains(live, want) == [
        ".spec.replicas: got 2, want 3",
        ".spec.template.containers[0].resources.limits.cpu: got '3', want '4000m'",
    ]


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        pytest.param(
            {"from": "staging", "stage": "pin", "image": ""},
            ["Promote (pin image and model)", "Offline plan of the promoted stack", "Pulumi up"],
            id="pin",
        ),
        pytest.param(
            {"from": "dev", "stage": "pin", "image": ""},
            [
                "Image digest from the source stack",
                "Promote (pin image and model)",
                "Offline plan of the promoted stack",
                "Pulumi up",
            ],
            id="pin-from-dev",
        ),
        pytest.param(
            {"from": "staging", "stage": "mirror", "image": ""},
            ["Promote (mirror stage)", "Offline plan of the promoted stack", "Pulumi up"],
            id="mirror",
        ),
    ],
)
def test_promote_workflow_steps_chosen_by_their_conditions(inputs: dict, expected: list) -> None:
    """The `if:` of each step, evaluated as GitHub would for these inputs (the e2e test runs the chosen steps).

    With `from: dev` the digest step runs first; the pin step's `env.IMAGE == ''` is read before that step sets it,
    as this evaluation does not model `$GITHUB_ENV`: the e2e test only runs the `from: staging` row.
    """
    from cluster_helpers import workflow_steps

    inputs = {"deployment": "bob", "to": "prod", "percent": "10", **inputs}
    env = {"IMAGE": inputs["image"]}
    path = Path(__file__).resolve().parents[2] / "examples" / "ci" / "promote.yml"
    assert [s["name"] for s in workflow_steps(path, inputs, env)] == expected
