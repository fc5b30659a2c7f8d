"""The SDK's Workspace against the real Pulumi engine and the throwaway API server (marker ``cluster``).

A stack of its own (``ws``: staging's online endpoint in namespace ml-ws, pinned images) is brought up once for the
module and destroyed at the end, so these tests do not depend on the order of test_e2e.py. Pods do not run
containers here (kwok), so the checks read what the engine and the API server hold: the outputs, the Secret's keys
after a rotation, the HTTPRoute's weights after a traffic change. The no-401-under-load property of a rotation runs
against local processes (tests/sdk/test_local_endpoints.py); here it rests on the other key's Secret entry being left
untouched, which the Secret check pins.

Pod logs (``endpoints logs --stack``, ``Workspace.logs``) are read through the API server from kwok's kubelet server,
which serves for each pod the file its ``Logs`` object names (docs/cluster.md). The content is what the real serving
process writes: a local run of the same endpoint and deployment (tests/sdk's scoring script), one request per pod,
written per pod in the container runtime's (CRI) log format as containerd would.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_helpers import ENDPOINTS, Cluster, Project

from endpoints.sdk import EndpointError, LocalEndpoints, Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))  # the SDK tests' scoring script
from sdk_helpers import SCORE, deployment_yaml

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

STACK = "ws"
ENDPOINT = "car-classifier"
NAMESPACE = "ml-ws"


def _core(cluster: Cluster) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))


@pytest.fixture(scope="module")
def ws(project: Project, cluster: Cluster) -> Iterator[Workspace]:
    staging = yaml.safe_load((project.root / "stacks" / "Pulumi.staging.yaml").read_text())["config"]
    config = {
        "ml-endpoints:namespace": NAMESPACE,
        "ml-endpoints:domain": "ws.endpoints.example.com",
        "ml-endpoints:endpoints": ["examples/car-classifier"],
        "ml-endpoints:createPriorityClasses": False,
        # Not one of dev/staging/prod by name: the pack applies prod's rules, here as warnings.
        "ml-endpoints:policyEnforcement": "advisory",
        # staging's pinned images and split (alice 100, bob 0), without its mirror to bob.
        "ml-endpoints:overrides": {
            ENDPOINT: {k: v for k, v in staging["ml-endpoints:overrides"][ENDPOINT].items() if k != "mirrorTraffic"}
        },
    }
    (project.root / "stacks" / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config}))
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    project.pulumi("up", "--stack", STACK, "--yes", timeout=900)
    try:
        yield Workspace(STACK, project.root, env=project.env)
    finally:
        project.pulumi("destroy", "--stack", STACK, "--yes", timeout=900)


def _secret_keys(cluster: Cluster) -> dict[str, str]:
    secrets = _core(cluster).list_namespaced_secret(NAMESPACE, label_selector=f"ml-endpoints.io/endpoint={ENDPOINT}")
    [secret] = [s for s in secrets.items if "primary" in (s.data or {})]
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items() if k in ("primary", "secondary")}


def test_outputs_show_and_credentials(ws: Workspace, cluster: Cluster) -> None:
    assert ENDPOINT in [row["name"] for row in ws.endpoints()]
    shown = ws.show(ENDPOINT)
    assert shown["scoring_uri"] == f"https://{ENDPOINT}.ws.endpoints.example.com/score"
    assert shown["traffic"] == {"alice": 100, "bob": 0}
    keys = ws.credentials(ENDPOINT)
    assert set(keys) == {"primaryKey", "secondaryKey"} and keys["primaryKey"] != keys["secondaryKey"]
    assert _secret_keys(cluster) == {"primary": keys["primaryKey"], "secondary": keys["secondaryKey"]}


def test_regenerate_secondary_leaves_the_primary(ws: Workspace, cluster: Cluster) -> None:
    before = ws.credentials(ENDPOINT)
    report = ws.regenerate_keys(ENDPOINT, "secondary")
    after = report["credentials"]
    assert after["primaryKey"] == before["primaryKey"] and after["secondaryKey"] != before["secondaryKey"]
    assert _secret_keys(cluster) == {"primary": after["primaryKey"], "secondary": after["secondaryKey"]}


def test_set_traffic_reaches_the_httproute(ws: Workspace, cluster: Cluster) -> None:
    from kubernetes import client, config

    report = ws.set_traffic(ENDPOINT, {"alice": 70, "bob": 30})
    assert report["up"]["result"] == "succeeded"
    custom = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", ENDPOINT)
    [default] = [r for r in route["spec"]["rules"] if not any(m.get("headers") for m in r.get("matches", []))]
    assert [(b["name"], b["weight"]) for b in default["backendRefs"]] == [
        ("car-classifier-alice", 70),
        ("car-classifier-bob", 30),
    ]
    # The stack file holds the change (the next `pulumi up` from the repository keeps it).
    config_doc = yaml.safe_load(Path(ws.stack_file).read_text())["config"]
    assert config_doc["ml-endpoints:overrides"][ENDPOINT]["traffic"] == {"alice": 70, "bob": 30}


# ------------------------------------------------------------------------------ the CLI's --stack commands


def _cli(project: Project, *args: str) -> Any:
    proc = project.run(ENDPOINTS, *args, "--stack", STACK, "--project", str(project.root), timeout=900)
    return json.loads(proc.stdout)


def test_cli_list_show_and_get_credentials(project: Project, ws: Workspace) -> None:
    listed = _cli(project, "list", "--json")
    assert [row["name"] for row in listed] == [ENDPOINT]
    shown = _cli(project, "show", ENDPOINT, "--json")
    assert shown == ws.show(ENDPOINT)
    assert _cli(project, "get-credentials", ENDPOINT) == ws.credentials(ENDPOINT)


def test_cli_regenerate_primary_key(project: Project, ws: Workspace, cluster: Cluster) -> None:
    before = ws.credentials(ENDPOINT)
    report = _cli(project, "regenerate-keys", ENDPOINT, "--key", "primary", "--json")
    after = ws.credentials(ENDPOINT)
    assert after["secondaryKey"] == before["secondaryKey"] and after["primaryKey"] != before["primaryKey"]
    assert _secret_keys(cluster) == {"primary": after["primaryKey"], "secondary": after["secondaryKey"]}
    assert after["primaryKey"] not in json.dumps(report)  # the report names the change, never the key


# ------------------------------------------------------------------------------ pod logs (kwok's Logs objects)

LOGGED = "alice"  # the deployment whose pods get logs
LATE = "late-line"  # the request id of the lines appended while `-f` runs


def _eventually(check: Callable[[], Any], what: str, timeout_s: float = 120.0, show: Callable[[], Any] = str) -> Any:
    """``check()`` once it is true (a readiness poll, bounded); the failure shows ``show()``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}; got {str(show())[:3000]}")
        time.sleep(0.5)


def _running_pods(cluster: Cluster, deployment: str) -> list[str]:
    selector = f"ml-endpoints.io/endpoint={ENDPOINT},ml-endpoints.io/deployment={deployment}"

    def settled() -> list[str]:
        pods = _core(cluster).list_namespaced_pod(NAMESPACE, label_selector=selector).items
        if pods and all(p.status.phase == "Running" and p.metadata.deletion_timestamp is None for p in pods):
            return sorted(p.metadata.name for p in pods)
        return []

    return list(_eventually(settled, f"the pods of {deployment} Running"))


def _request_id(line: str) -> str | None:
    return json.loads(line).get("request_id")


def _serving_log(folder: Path, requests: list[str]) -> list[str]:
    """The log lines of the real scoring server for car-classifier/alice, run locally, one request per id."""
    (folder / "deployments").mkdir(parents=True)
    (folder / "code").mkdir()
    (folder / "code" / "score.py").write_text(SCORE)
    (folder / "endpoint.yml").write_text(f"name: {ENDPOINT}\nauth_mode: key\ntraffic:\n  alice: 100\n  bob: 0\n")
    for name in ("alice", "bob"):
        text = deployment_yaml(name).replace("endpoint_name: shop", f"endpoint_name: {ENDPOINT}")
        (folder / "deployments" / f"{name}.yml").write_text(text)
    local = LocalEndpoints(folder.parent / "local-state")
    try:
        local.up(folder, port=0)
        with local.client(ENDPOINT) as client:
            for request_id in requests:
                assert client.invoke(json={"id": request_id}, deployment=LOGGED, request_id=request_id).status == 200
        log = local.log_files(ENDPOINT)[LOGGED]

        def all_logged() -> list[str]:
            lines = log.read_text().splitlines()
            return lines if {_request_id(line) for line in lines} >= set(requests) else []

        return list(_eventually(all_logged, "the access lines of every request"))
    finally:
        local.down()


def _cri(line: str, stamp: str | None = None) -> str:
    """One line of a container log file as containerd writes it: RFC 3339 time, stream, full-line tag, content."""
    return f"{stamp or json.loads(line)['time']} stdout F {line}\n"


@pytest.fixture(scope="module")
def pod_logs(ws: Workspace, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each pod of alice gets a Logs object naming its file: the serving process's own lines, plus the lines of the
    request made with the pod's name as its id. Yields the pods, their lines, and the lines held back for `-f`."""
    from kubernetes import client, config

    pods = _running_pods(cluster, LOGGED)
    base = tmp_path_factory.mktemp("pod-logs")
    lines = _serving_log(base / ENDPOINT, [*pods, LATE])
    custom = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
    files, by_pod = {}, {}
    for pod in pods:
        by_pod[pod] = [line for line in lines if _request_id(line) in (None, pod)]
        files[pod] = base / f"{pod}.log"
        files[pod].write_text("".join(_cri(line) for line in by_pod[pod]))
        body = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": pod, "namespace": NAMESPACE},
            "spec": {"logs": [{"containers": [], "logsFile": str(files[pod]), "follow": True}]},
        }
        custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", NAMESPACE, "logs", body)
    try:
        # kwok picks the objects up by watching them: wait until every pod's whole log reads back.
        want = {pod: "".join(f"{line}\n" for line in by_pod[pod]) for pod in pods}
        read = lambda: ws.logs(ENDPOINT, LOGGED, tail=None, core_api=_core(cluster))  # noqa: E731
        _eventually(lambda: read() == want, f"kwok serving the logs of {pods}", show=read)
        yield {"pods": pods, "lines": by_pod, "files": files, "late": [x for x in lines if _request_id(x) == LATE]}
    finally:
        for pod in pods:
            custom.delete_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", NAMESPACE, "logs", pod)


def _logs_cli(project: Project, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return project.run(
        ENDPOINTS, "logs", ENDPOINT, *args, "--stack", STACK, "--project", str(project.root), timeout=300, check=check
    )


def test_cli_logs_prints_the_tail_of_each_pod(project: Project, pod_logs: dict[str, Any]) -> None:
    pods, lines = pod_logs["pods"], pod_logs["lines"]
    assert len(pods) == 2  # staging's alice: two instances
    assert all(len(lines[pod]) > 3 for pod in pods)  # server start, the request's lines: more than the tail
    shown = _logs_cli(project, "--deployment", LOGGED, "--tail", "3")
    assert shown.stdout == "".join(f"==> {pod} <==\n" + "".join(f"{x}\n" for x in lines[pod][-3:]) for pod in pods)
    assert all(_request_id(lines[pod][-1]) == pod for pod in pods)  # each pod's own request is in its log
    as_json = json.loads(_logs_cli(project, "--deployment", LOGGED, "--tail", "2", "--json").stdout)
    assert as_json == {pod: "".join(f"{x}\n" for x in lines[pod][-2:]) for pod in pods}


def test_sdk_logs_match_and_an_unknown_deployment_names_the_known_ones(
    project: Project, ws: Workspace, cluster: Cluster, pod_logs: dict[str, Any]
) -> None:
    lines = pod_logs["lines"]
    core = _core(cluster)
    assert ws.logs(ENDPOINT, LOGGED, tail=2, core_api=core) == {
        pod: "".join(f"{x}\n" for x in lines[pod][-2:]) for pod in pod_logs["pods"]
    }
    # The whole endpoint: alice's pods with their logs, bob's (no Logs object: kwok has nothing to serve) empty.
    whole = ws.logs(ENDPOINT, tail=1, core_api=core)
    bob = _running_pods(cluster, "bob")
    assert whole == {**{pod: f"{lines[pod][-1]}\n" for pod in pod_logs["pods"]}, **dict.fromkeys(bob, "")}
    message = (
        f"{ws.stack_file}: endpoint {ENDPOINT!r} of stack {STACK} has no deployment 'nope' (deployments: alice, bob)"
    )
    with pytest.raises(EndpointError) as e:
        ws.logs(ENDPOINT, "nope", core_api=core)
    assert str(e.value) == message
    cli = _logs_cli(project, "--deployment", "nope", check=False)
    assert (cli.returncode, cli.stdout, cli.stderr) == (1, "", f"error: {message}\n")
    cli = _logs_cli(project, "--deployment", "nope", "--json", check=False)
    assert (cli.returncode, json.loads(cli.stdout)) == (1, {"error": message})


def _now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_follow_shows_appended_lines_until_interrupted(
    project: Project, ws: Workspace, cluster: Cluster, pod_logs: dict[str, Any]
) -> None:
    pods, lines, late = pod_logs["pods"], pod_logs["lines"], pod_logs["late"]
    target = pods[0]
    argv = [
        ENDPOINTS,
        "logs",
        ENDPOINT,
        "--deployment",
        LOGGED,
        "--tail",
        "2",
        "-f",
        "--stack",
        STACK,
        "--project",
        str(project.root),
    ]
    child = subprocess.Popen(
        argv,
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [out.put(line) for line in child.stdout or ()], daemon=True)
    reader.start()
    seen: list[str] = []

    def read_until(want: Callable[[list[str]], bool], what: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not want(seen):
            if time.monotonic() > deadline or child.poll() is not None:
                pytest.fail(f"`endpoints logs -f`: {what} not shown (exit {child.poll()}); got {seen}")
            with contextlib.suppress(queue.Empty):
                seen.append(out.get(timeout=1).rstrip("\n"))

    try:
        tail = [x for pod in pods for x in (f"==> {pod} <==", *lines[pod][-2:])]
        read_until(lambda got: len(got) >= len(tail), "the tail")
        assert seen == tail
        # The runtime appends the held-back request's lines to one pod's file, stamped now.
        with pod_logs["files"][target].open("a") as f:
            f.writelines(_cri(line, _now_stamp()) for line in late)
        expected = [f"{target} | {line}" for line in late]
        read_until(lambda got: len(got) >= len(tail) + len(late), "the appended lines")
        assert seen[len(tail) :] == expected  # each once, nothing else repeated
        # The SDK's follow too: its first look at a pod yields the pod's last lines, the appended ones among them.
        deadline = time.monotonic() + 60
        sdk = ws.follow_logs(ENDPOINT, LOGGED, core_api=_core(cluster), stop=lambda: time.monotonic() > deadline)
        assert next(x for x in sdk if x[1] == late[-1]) == (target, late[-1])
    finally:
        child.send_signal(signal.SIGINT)  # Ctrl-C: the command stops following and exits
        try:
            code = child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        reader.join(timeout=10)
        stderr = child.stderr.read() if child.stderr else ""
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    assert (code, stderr) == (0, "")
