"""`endpoints rollout car-classifier bob --stack rollout` against the throwaway cluster, the real Pulumi engine (the
Automation API, preview with the policy pack, then up) and a real Prometheus (Debian's binary).

The stack (``rollout``: dev's online endpoint with staging's pinned images, monitoring on, alice 100 / bob 0) is
brought up once for the module and destroyed at the end. Its pods are kwok's and run no container, so the
deployments' pods are stood for by real serving processes on 127.0.0.1: the example's own scoring code
(``endpoints local up`` of a copy of examples/car-classifier, bob's script wrapped with a fault switch: every
request fails while a file the test writes exists). Prometheus scrapes them with the scrape configuration the
Prometheus Operator generates from the stack's PodMonitor as the API server holds it (the pods' real names, labels
and namespace as service-discovery labels, the operator's relabelling then the PodMonitor's own), so the series carry
exactly the labels the rollout's production queries select. One more target stands for a same-named endpoint of
another stack (namespace ``ml-decoy``) scraped by the same Prometheus: the rollout must never count it.

Clients: a bounded load loop on 127.0.0.1 (count and time bounded) reads the HTTPRoute's weights from the API server
twice a second and sends each request to the deployment those weights pick (pinned through the local router by the
``azureml-model-deployment`` header), so the traffic split follows what each step made live on the cluster.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cluster_helpers import ENDPOINTS, REPO, Cluster, Project, free_port
from prometheus_helpers import pod_targets, scrape_job, targets_up

from endpoints.rollout.stack import StackTarget, guard_queries
from endpoints.rollout.window import parse_metrics

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1800)]

STACK = "rollout"
ENDPOINT = "car-classifier"
NAMESPACE = "ml-rollout"
DECOY_NAMESPACE = "ml-decoy"
DEPLOYMENTS = ("alice", "bob")
EXAMPLE = REPO / "examples" / "car-classifier"
PROMETHEUS = shutil.which("prometheus")
BAKE = "5s"
# bob's scoring script as the example ships it, behind a switch: every request fails while $FLIP_FILE exists.
SWITCH = '''"""bob's scoring script (score_bob.py) with a fault switch for the rollout test."""

import os

from score_bob import init, run as _run  # noqa: F401  (init is the script's own)

from azureml.contrib.services.aml_request import rawhttp


@rawhttp
def run(request):
    if os.path.exists(os.environ["FLIP_FILE"]):
        raise RuntimeError("fault injected by the rollout test")
    return _run(request)
'''


# ------------------------------------------------------------------------------------------------ the cluster side


def _custom(cluster: Cluster) -> Any:
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))


def _route_weights(custom: Any) -> dict[str, int]:
    """The default rule's weights of the endpoint's HTTPRoute on the API server, by deployment."""
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", ENDPOINT)
    [default] = [r for r in route["spec"]["rules"] if not any(m.get("headers") for m in r.get("matches", []))]
    weights = {b["name"].removeprefix(f"{ENDPOINT}-"): int(b["weight"]) for b in default["backendRefs"]}
    return {d: weights.pop(d, 0) for d in DEPLOYMENTS} | weights  # a deployment without live traffic has no ref


def _stack_traffic(path: Path) -> dict[str, int]:
    doc = yaml.safe_load(path.read_text())
    return dict(doc["config"]["ml-endpoints:overrides"][ENDPOINT]["traffic"])


def _wait(what: str, check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(0.5)


def _pods(cluster: Cluster, selector: dict[str, str]) -> list[dict[str, Any]]:
    """The namespace's pods matching ``selector``, as the API serves them (camelCase)."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=",".join(f"{k}={v}" for k, v in selector.items()))
    return list(core.api_client.sanitize_for_serialization(pods)["items"])


# ------------------------------------------------------------------------------------------------------- the load


@dataclass
class SplitLoad:
    """Clients following the HTTPRoute's weights on the API server; bounded in count and time, stop by themselves.

    One thread reads the weights twice a second; ``clients`` threads each send one request at a time to the
    deployment the weights pick.

    Attributes:
        seen: Each distinct weights map read from the API server, in order (what each step made live).
        results: ``(monotonic time, deployment, status)`` per request.
        flip: ``(deployment, weight, file)``: write ``file`` once the route gives ``deployment`` that weight.
    """

    url: str
    key: str
    custom: Any
    body: bytes
    flip: tuple[str, int, Path] | None = None
    clients: int = 3
    max_requests: int = 60_000
    max_seconds: float = 1200.0
    seen: list[dict[str, int]] = field(default_factory=list)
    results: list[tuple[float, str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._deadline = time.monotonic() + self.max_seconds
        self._read_weights()  # the clients start with the live weights
        self.threads = [threading.Thread(target=self._watch, daemon=True)]
        self.threads += [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        """Stop and wait for the last request to end."""
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _running(self) -> bool:
        return not self.stop.is_set() and len(self.results) < self.max_requests and time.monotonic() < self._deadline

    def _read_weights(self) -> None:
        weights = _route_weights(self.custom)
        if not self.seen or self.seen[-1] != weights:
            self.seen.append(weights)
        if self.flip and weights.get(self.flip[0]) == self.flip[1] and not self.flip[2].exists():
            self.flip[2].write_text("fail from now on")

    def _watch(self) -> None:
        while self._running():
            try:
                self._read_weights()
            except Exception as e:  # the API server is the test's own: a failed read is reported at the end
                self.errors.append(f"{type(e).__name__}: {e}")
            self.stop.wait(0.5)

    def _client(self, index: int) -> None:
        rng = random.Random(index)
        headers = {"authorization": f"Bearer {self.key}", "content-type": "application/json"}
        with httpx.Client(timeout=10, trust_env=False) as client:
            while self._running():
                live = {d: w for d, w in self.seen[-1].items() if w > 0}
                [deployment] = rng.choices(list(live), weights=list(live.values()))
                try:
                    r = client.post(
                        f"{self.url}/score",
                        content=self.body,
                        headers={**headers, "azureml-model-deployment": deployment},
                    )
                    self.results.append((time.monotonic(), deployment, r.status_code))
                except httpx.HTTPError:
                    self.results.append((time.monotonic(), deployment, 0))
                self.stop.wait(0.02)  # the engine shares these cores


# -------------------------------------------------------------------------------------------------- the fixtures


@dataclass
class Env:
    project: Project
    cluster: Cluster
    stack_file: Path
    original: str
    prometheus: str
    router: str
    key: str
    deployment_ports: dict[str, int]
    flip: Path
    pods: dict[str, str]


def _stack_config(project: Project) -> dict[str, Any]:
    """dev's online endpoint (names and instance counts) with staging's pinned images, monitoring on, alice 100."""
    dev = yaml.safe_load((project.root / "stacks" / "Pulumi.dev.yaml").read_text())["config"]
    staging = yaml.safe_load((project.root / "stacks" / "Pulumi.staging.yaml").read_text())["config"]
    override = dev["ml-endpoints:overrides"][ENDPOINT]
    for name, deployment in override["deployments"].items():
        deployment["image"] = staging["ml-endpoints:overrides"][ENDPOINT]["deployments"][name]["image"]
    override["traffic"] = {"alice": 100, "bob": 0}
    return {
        "ml-endpoints:namespace": NAMESPACE,
        "ml-endpoints:domain": dev["ml-endpoints:domain"],
        "ml-endpoints:endpoints": ["examples/car-classifier"],
        "ml-endpoints:publicNetworkAccess": "enabled",
        "ml-endpoints:createPriorityClasses": False,
        "ml-endpoints:monitoring": True,
        # Not dev/staging/prod by name: the pack applies prod's rules, as warnings (test_policy_refusal: mandatory).
        "ml-endpoints:policyEnforcement": "advisory",
        "ml-endpoints:overrides": {ENDPOINT: override},
    }


def _local_copy(tmp: Path, flip: Path) -> Path:
    """examples/car-classifier (trained models included) with bob's script behind the fault switch."""
    if not all((EXAMPLE / "models" / name / ".trained").is_file() for name in ("alice", "bob")):
        subprocess.run([sys.executable, str(EXAMPLE / "train.py")], check=True, timeout=900, capture_output=True)
    root = tmp / "car-classifier"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".endpoints", "__pycache__"))
    (root / "code" / "score_bob_switch.py").write_text(SWITCH)
    bob = root / "deployments" / "bob.yml"
    text = bob.read_text().replace("scoring_script: score_bob.py", "scoring_script: score_bob_switch.py")
    bob.write_text(text.replace('  WORKER_COUNT: "1"\n', f'  WORKER_COUNT: "1"\n  FLIP_FILE: "{flip}"\n'))
    return root


@pytest.fixture(scope="module")
def env(project: Project, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed (apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("rollout")
    stack_file = project.root / "stacks" / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(yaml.safe_dump({"config": _stack_config(project)}, sort_keys=False))
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    original = stack_file.read_text()  # as init rewrote it, with its encryption salt (a committed file has one)
    local_env = {**project.env, "ENDPOINTS_STATE_DIR": str(tmp / "state")}
    cli = [sys.executable, "-m", "endpoints.cli.main"]
    prometheus: subprocess.Popen[bytes] | None = None
    log = (tmp / "prometheus.log").open("wb")
    try:
        project.pulumi("up", "--stack", STACK, "--yes", timeout=1500)
        custom = _custom(cluster)
        monitor = custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", NAMESPACE, "podmonitors", f"{ENDPOINT}-metrics"
        )
        pods = _wait("a Running pod per deployment", lambda: _running_pods(cluster, monitor), 300)
        flip = tmp / "bob-fails"
        root = _local_copy(tmp, flip)
        up = subprocess.run(
            [*cli, "local", "up", str(root), "--port", "0", "--detach"],
            env=local_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        state = json.loads((tmp / "state" / ENDPOINT / "state.json").read_text())
        ports = {name: int(rec["port"]) for name, rec in state["deployments"].items()}
        creds = subprocess.run(
            [*cli, "get-credentials", ENDPOINT], env=local_env, capture_output=True, text=True, timeout=60, check=True
        )
        targets = []
        for pod in pods.values():
            deployment = pod["metadata"]["labels"]["ml-endpoints.io/deployment"]
            targets += pod_targets(pod, f"127.0.0.1:{ports[deployment]}")
        # A same-named endpoint's "bob" in another stack's namespace, scraped by the same Prometheus: alice's process.
        decoy = json.loads(json.dumps(pods["alice"]))
        decoy["metadata"].update(namespace=DECOY_NAMESPACE, name="car-classifier-bob-decoy")
        decoy["metadata"]["labels"]["ml-endpoints.io/deployment"] = "bob"
        targets += pod_targets(decoy, f"127.0.0.1:{ports['alice']}")
        config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape_job(monitor, targets, "1s")]}
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        _wait("Prometheus scraping all three targets", lambda: targets_up(url) == 3, 120)
        yield Env(
            project,
            cluster,
            stack_file,
            original,
            url,
            f"http://127.0.0.1:{state['router']['port']}",
            json.loads(creds.stdout)["primaryKey"],
            ports,
            flip,
            {d: p["metadata"]["name"] for d, p in pods.items()},
        )
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        log.close()
        subprocess.run([*cli, "local", "down"], env=local_env, capture_output=True, timeout=120, check=False)
        project.pulumi("destroy", "--stack", STACK, "--yes", timeout=1500, check=False)
        project.pulumi("stack", "rm", STACK, "--yes", "--force", check=False)


def _running_pods(cluster: Cluster, monitor: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    pods = _pods(cluster, monitor["spec"]["selector"]["matchLabels"])
    running = {
        p["metadata"]["labels"]["ml-endpoints.io/deployment"]: p
        for p in pods
        if p.get("status", {}).get("phase") == "Running"
    }
    return running if set(running) == {"alice", "bob"} else None


@pytest.fixture
def load(env: Env) -> Iterator[SplitLoad]:
    """The load of one test, stopped (and its thread joined) at the end; a test may set ``flip`` before starting."""
    body = (EXAMPLE / "samples" / "request.json").read_bytes()
    split = SplitLoad(env.router, env.key, _custom(env.cluster), body)
    try:
        yield split
    finally:
        split.close()
        env.flip.unlink(missing_ok=True)


def _rollout(env: Env, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = env.project.run(
        ENDPOINTS,
        "rollout",
        ENDPOINT,
        "bob",
        "--stack",
        STACK,
        "--prometheus",
        env.prometheus,
        "--bake",
        BAKE,
        "--min-requests",
        "5",
        "--json",
        *extra,
        timeout=1200,
        check=False,
    )
    try:
        return proc, json.loads(proc.stdout)
    except ValueError:
        pytest.fail(
            f"rollout exited {proc.returncode} without a JSON timeline:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )


def _history(env: Env) -> int:
    return len(json.loads(env.project.pulumi("stack", "history", "--stack", STACK, "--json").stdout))


# --------------------------------------------------------------------------------------------------------- tests


def test_the_pod_monitor_s_labels_reach_the_series_the_rollout_queries(env: Env) -> None:
    """The scrape config made from the stack's PodMonitor gives the series namespace/endpoint/deployment/pod."""
    [query, _] = guard_queries(ENDPOINT, NAMESPACE)
    by = "sum by (namespace, endpoint, deployment, pod) (endpoints_requests_total)"
    with httpx.Client(base_url=env.prometheus, timeout=5, trust_env=False) as client:
        series = {
            tuple(r["metric"].get(k) for k in ("namespace", "endpoint", "deployment", "pod"))
            for r in client.get("/api/v1/query", params={"query": by}).json()["data"]["result"]
        }
        assert client.get("/api/v1/query", params={"query": query}).json()["status"] == "success"
    assert series == {
        (NAMESPACE, ENDPOINT, "alice", env.pods["alice"]),
        (NAMESPACE, ENDPOINT, "bob", env.pods["bob"]),
        (DECOY_NAMESPACE, ENDPOINT, "bob", "car-classifier-bob-decoy"),
    }


def test_a_mandatory_policy_violation_stops_the_rollout_before_any_up(env: Env) -> None:
    """Prod's rules (a stack the pack cannot classify) made mandatory: the first step's preview is refused."""
    strict = env.original.replace("policyEnforcement: advisory", "policyEnforcement: mandatory")
    assert strict != env.original
    env.stack_file.write_text(strict)
    try:
        before = _history(env)
        proc, outcome = _rollout(env, "--steps", "10,50,100")
        assert proc.returncode == 1, proc.stderr[-4000:]
        assert [e["event"] for e in outcome["timeline"]] == ["start", "refused", "rollback"]
        assert outcome["reason"].startswith(
            f"step 10%: stack {STACK}: preview with the policy pack refused traffic {{'alice': 90, 'bob': 10}}:\n"
        ), outcome["reason"]
        violations = outcome["reason"].split("\n")[1:]
        [private] = [v for v in violations if v.startswith("[mandatory] prod-endpoint-private ")]
        assert private.startswith(
            "[mandatory] prod-endpoint-private (kubernetes:gateway.networking.k8s.io/v1:HTTPRoute: "
        )
        assert private.endswith(
            f'HTTPRoute "{ENDPOINT}" attaches to public Gateway "public"; prod endpoints must be private: set'
            ' public_network_access: disabled so the route attaches to Gateway "gateway-system/private"'
        ), private
        assert all(v.startswith("[mandatory] ") for v in violations), violations
        assert f"rolled back: {outcome['reason'].splitlines()[0]}" in proc.stderr
        assert _history(env) == before  # no up ran
        assert env.stack_file.read_text() == strict
        assert _route_weights(_custom(env.cluster)) == {"alice": 100, "bob": 0}
    finally:
        env.stack_file.write_text(env.original)


def test_errors_injected_at_50_percent_roll_back_on_the_server_and_in_the_stack_file(env: Env, load: SplitLoad) -> None:
    load.flip = ("bob", 50, env.flip)
    load.start()
    proc, outcome = _rollout(env, "--steps", "10,50,100", "--max-error-rate", "0.05")
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert outcome["ok"] is False
    match = re.fullmatch(
        r"step 50%: error rate (\d+\.\d)% \((\d+)/(\d+)\) is above --max-error-rate 0\.05 = 5\.0%", outcome["reason"]
    )
    assert match, outcome["reason"]
    rate, errors, requests = float(match[1]), int(match[2]), int(match[3])
    assert requests >= 5 and errors / requests > 0.05 and round(100 * errors / requests, 1) == rate
    assert [e["event"] for e in outcome["timeline"]] == ["start", "step", "passed", "step", "breach", "rollback"]
    assert outcome["timeline"][-1]["traffic"] == {"alice": 100, "bob": 0}
    assert f"rolled back: {outcome['reason']}" in proc.stderr
    assert _route_weights(_custom(env.cluster)) == {"alice": 100, "bob": 0}
    assert env.stack_file.read_text() == env.original  # byte for byte
    assert load.errors == []
    assert load.seen[:3] == [{"alice": 100, "bob": 0}, {"alice": 90, "bob": 10}, {"alice": 50, "bob": 50}]
    assert load.seen[-1] == {"alice": 100, "bob": 0}


def test_a_good_challenger_reaches_100_step_by_step_on_the_server(env: Env, load: SplitLoad) -> None:
    load.start()
    proc, outcome = _rollout(env, "--steps", "10,50,100")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (outcome["ok"], outcome["reason"], outcome["traffic"]) == (True, None, {"alice": 0, "bob": 100})
    events = [(e["event"], e.get("percent") or e.get("phase")) for e in outcome["timeline"]]
    assert events == [
        ("start", None),
        ("step", 10),
        ("passed", "step 10%"),
        ("step", 50),
        ("passed", "step 50%"),
        ("step", 100),
        ("passed", "step 100%"),
        ("done", None),
    ]
    # Each step was live on the API server (read by the clients while it baked), in order, and the last stays.
    assert load.seen == [
        {"alice": 100, "bob": 0},
        {"alice": 90, "bob": 10},
        {"alice": 50, "bob": 50},
        {"alice": 0, "bob": 100},
    ]
    assert _route_weights(_custom(env.cluster)) == {"alice": 0, "bob": 100}
    assert _stack_traffic(env.stack_file) == {"alice": 0, "bob": 100}
    want = yaml.safe_load(env.original)
    want["config"]["ml-endpoints:overrides"][ENDPOINT]["traffic"] = {"alice": 0, "bob": 100}
    assert yaml.safe_load(env.stack_file.read_text()) == want
    load.close()
    assert {s for _, _, s in load.results} == {200}
    assert load.errors == []
    _the_rollout_s_queries_count_this_stack_only(env)


def _the_rollout_s_queries_count_this_stack_only(env: Env) -> None:
    """Load stopped: the production snapshot equals each process's own /metrics, the decoy namespace left out."""
    direct = {
        name: parse_metrics(httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text)
        for name, port in env.deployment_ports.items()
    }
    read_at = time.time()
    _wait("every target scraped after the direct read", lambda: _oldest_scrape(env.prometheus) > read_at, 30)
    target = StackTarget.open(env.project.root, STACK, ENDPOINT, env.prometheus, 5.0)
    try:
        snap = target.snapshot()
    finally:
        target.close()
    assert {n: (s.requests, s.errors) for n, s in snap.items()} == {
        n: (d.requests, d.errors) for n, d in direct.items()
    }


def _oldest_scrape(url: str) -> float:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError):
        body = httpx.get(
            f"{url}/api/v1/query", params={"query": "min(timestamp(up))"}, timeout=5, trust_env=False
        ).json()
        return float(body["data"]["result"][0]["value"][1])
    return 0.0
