"""`endpoints studio --stack` in a real browser (Playwright driving Debian's chromium) against the throwaway cluster,
the real Pulumi engine and a real Prometheus (marker ``cluster``).

A stack of its own (``studio-ui``, namespace ml-studio-ui: staging's online and batch endpoints, pinned images,
monitoring on) is brought up once for the module and destroyed at the end. Its pods are kwok's and run no container,
so what would run in them is stood for on 127.0.0.1, as test_rollout_cluster.py and test_workspace_cluster.py do:

* pod logs: a kwok ``Logs`` object per pod of alice names a file the test writes in the container runtime's format
  (and appends to while the page follows);
* metrics: real serving processes (``endpoints local up`` of a car-classifier with alice and bob) scraped by a real
  Prometheus with the scrape job the Prometheus Operator renders from the stack's PodMonitor (the pods' names, labels
  and namespace), plus a decoy target in another namespace the studio must never show;
* batch: the real job API process with the arguments Pulumi deployed it with (its Job templates from the API server,
  the endpoint's keys), reached through ``--endpoint-url``; its Jobs are real Jobs on the API server, which the test
  admits as Kueue would, and the runner container of each instance is stood for by the real runner
  (``python -m serving.batch.runner``) with the settings of the Job the job API created (the test's scoring script).

Flows, as a user clicks them: traffic edited -> the preview's stack file edits, resources and policy findings ->
Confirm -> the split on the page and the HTTPRoute on the API server change; the Logs tab's tail and follow; the
Metrics tab's charts from Prometheus; a batch job invoked from the page followed to Completed with its failed
mini-batch's reason and its output downloaded, and another canceled. Screenshots go to out/studio-screenshots/.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cluster_helpers import REPO, Cluster, Project, free_port, get_object, list_objects
from prometheus_helpers import pod_targets, scrape_job, targets_up
from studio_stack import ENGINE_TIMEOUT_S, TOKEN, Served, start

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studio"))  # the studio tests' scoring scripts
from studio_helpers import BATCH_SCORE, SCORE, deployment_yml, make_inputs

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(2400)]

STACK = "studio-ui"
NAMESPACE = "ml-studio-ui"
DECOY_NAMESPACE = "ml-decoy"
ONLINE = "car-classifier"
BATCH = "car-classifier-batch"
LOGGED = "alice"
PROMETHEUS = shutil.which("prometheus")
ARTIFACTS = REPO / "out" / "studio-screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
PAGE_TIMEOUT_MS = 120_000
LOCAL_TRAFFIC = "  alice: 100\n  bob: 0\n"


def _wait(what: str, check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(0.5)


def _kube(cluster: Cluster) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(cluster.kubeconfig))


def _now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _cri(line: str) -> str:
    """One line of a container log file as containerd writes it: RFC 3339 time, stream, full-line tag, content."""
    return f"{_now_stamp()} stdout F {line}\n"


# ------------------------------------------------------------------------------------------------ the stack


def _stack_config(project: Project, cluster: Cluster) -> dict[str, Any]:
    staging = yaml.safe_load((project.root / "stacks" / "Pulumi.staging.yaml").read_text())["config"]
    overrides = staging["ml-endpoints:overrides"]
    # The batch Jobs' pods name the batch PriorityClasses: this stack creates the project's PriorityClasses unless
    # another stack of the session already holds them (cluster-scoped: one owner).
    held = {p["metadata"]["name"] for p in list_objects(cluster.client(), "scheduling.k8s.io/v1", "PriorityClass")}
    return {
        "ml-endpoints:namespace": NAMESPACE,
        "ml-endpoints:domain": "studio-ui.endpoints.example.com",
        "ml-endpoints:endpoints": ["examples/car-classifier", "examples/car-classifier-batch"],
        "ml-endpoints:createPriorityClasses": not any(name.startswith("ml-endpoints") for name in held),
        "ml-endpoints:monitoring": True,
        # Not dev/staging/prod by name: the pack applies prod's rules, as warnings (shown in the preview).
        "ml-endpoints:policyEnforcement": "advisory",
        "ml-endpoints:jobApiImage": staging["ml-endpoints:jobApiImage"],
        "ml-endpoints:overrides": {ONLINE: overrides[ONLINE], BATCH: overrides[BATCH]},
    }


def _running_pods(cluster: Cluster, selector: str, want: int | None = None) -> list[dict[str, Any]]:
    def settled() -> list[dict[str, Any]]:
        pods = list_objects(cluster.client(), "v1", "Pod", NAMESPACE, label_selector=selector)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if live and all(p["status"].get("phase") == "Running" for p in live) and (want is None or len(live) == want):
            return sorted(live, key=lambda p: p["metadata"]["name"])
        return []

    return list(_wait(f"Running pods of {selector}", settled, 300))


def _secret_keys(cluster: Cluster, endpoint: str) -> dict[str, str]:
    secrets = list_objects(
        cluster.client(), "v1", "Secret", NAMESPACE, label_selector=f"ml-endpoints.io/endpoint={endpoint}"
    )
    [secret] = [s for s in secrets if "primary" in (s.get("data") or {})]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items() if k in ("primary", "secondary")}


# ------------------------------------------------------------------------------------------ what stands in for pods


def _local_online(tmp: Path, env: dict[str, str]) -> tuple[dict[str, int], str, str]:
    """car-classifier with alice and bob as real serving processes (the studio tests' scoring script): their ports,
    the router's URL and the primary key."""
    root = tmp / ONLINE
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "model").mkdir()
    (root / "model" / "weights.txt").write_text("1\n")
    (root / "code" / "score.py").write_text(SCORE)
    (root / "endpoint.yml").write_text(f"name: {ONLINE}\nauth_mode: key\ntraffic:\n{LOCAL_TRAFFIC}")
    for name in ("alice", "bob"):
        text = deployment_yml(name).replace("endpoint_name: shop", f"endpoint_name: {ONLINE}")
        (root / "deployments" / f"{name}.yml").write_text(text.replace("instance_count: 2", "instance_count: 1"))
    cli = [sys.executable, "-m", "endpoints.cli.main"]
    up = subprocess.run(
        [*cli, "local", "up", str(root), "--port", "0", "--detach", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, up.stderr[-3000:]
    state = json.loads((Path(env["ENDPOINTS_STATE_DIR"]) / ONLINE / "state.json").read_text())
    ports = {name: int(rec["port"]) for name, rec in state["deployments"].items()}
    key = (Path(env["ENDPOINTS_STATE_DIR"]) / ONLINE / "keys" / "primary").read_text().strip()
    return ports, f"http://127.0.0.1:{state['router']['port']}", key


def _prometheus(tmp: Path, cluster: Cluster, ports: dict[str, int]) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus scraping the local serving processes as the stack's PodMonitor has it scrape the pods,
    plus a decoy: alice's process again as deployment ``carol`` of another namespace (never to be shown)."""
    from kubernetes import client

    custom = client.CustomObjectsApi(_kube(cluster))
    monitor = custom.get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", NAMESPACE, "podmonitors", f"{ONLINE}-metrics"
    )
    targets = []
    for deployment, port in ports.items():
        [pod] = _running_pods(cluster, f"ml-endpoints.io/endpoint={ONLINE},ml-endpoints.io/deployment={deployment}")[:1]
        targets += pod_targets(pod, f"127.0.0.1:{port}")
        if deployment == "alice":
            decoy = json.loads(json.dumps(pod))
            decoy["metadata"].update(namespace=DECOY_NAMESPACE, name=f"{ONLINE}-carol-decoy")
            decoy["metadata"]["labels"]["ml-endpoints.io/deployment"] = "carol"
            targets += pod_targets(decoy, f"127.0.0.1:{port}")
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape_job(monitor, targets, "1s")]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    _wait("Prometheus scraping all three targets", lambda: targets_up(url) == 3, 120)
    return proc, url


def _job_api(tmp: Path, cluster: Cluster) -> tuple[subprocess.Popen[bytes], str, Path]:
    """The real job API with the arguments and environment Pulumi deployed it with; only its templates folder, keys
    folder, output root and address are this machine's. Returns it, its URL and its output root."""
    client = cluster.client()
    templates = tmp / "templates"
    templates.mkdir()
    cm = get_object(client, "v1", "ConfigMap", f"{BATCH}-nightly-batch-template", NAMESPACE)
    for name, text in cm["data"].items():
        (templates / name).write_text(text)
    keys = tmp / "job-api-keys"
    keys.mkdir()
    for which, key in _secret_keys(cluster, BATCH).items():
        (keys / which).write_text(key)
    outputs = tmp / "outputs"
    deployed = get_object(client, "apps/v1", "Deployment", f"{BATCH}-jobs", NAMESPACE)
    [container] = deployed["spec"]["template"]["spec"]["containers"]
    port = free_port()
    args = list(container["args"])
    for flag, value in (
        ("--templates", str(templates)),
        ("--host", "127.0.0.1"),
        ("--port", str(port)),
        ("--output-root", str(outputs / BATCH)),
    ):
        args[args.index(flag) + 1] = value
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    assert env["ENDPOINTS_AUTH_MODE"] == "key", env
    env.update(ENDPOINTS_KEYS_DIR=str(keys), KUBECONFIG=str(cluster.kubeconfig), PATH=os.environ["PATH"])
    log = (tmp / "job-api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.batch.api", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (tmp / "job-api.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    _wait("the job API", answers, 120)
    return proc, url, outputs


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Env:
    project: Project
    cluster: Cluster
    studio: Served
    tmp: Path
    router: str
    key: str
    prometheus: str
    log_files: dict[str, Path]


@pytest.fixture(scope="module")
def env(project: Project, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed (apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("studio-ui")
    stack_file = project.root / "stacks" / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(yaml.safe_dump({"config": _stack_config(project, cluster)}, sort_keys=False))
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    local_env = {**project.env, "ENDPOINTS_STATE_DIR": str(tmp / "state")}
    started: list[subprocess.Popen[bytes]] = []
    studio: Served | None = None
    try:
        project.pulumi("up", "--stack", STACK, "--yes", timeout=1500)
        log_files = _pod_logs(cluster, tmp)
        ports, router, key = _local_online(tmp, local_env)
        prometheus, prometheus_url = _prometheus(tmp, cluster, ports)
        started.append(prometheus)
        job_api, job_api_url, _outputs = _job_api(tmp, cluster)
        started.append(job_api)
        extra = ("--prometheus", prometheus_url, "--endpoint-url", f"{BATCH}={job_api_url}/jobs")
        studio = start(project.root, project.env, tmp / "studio.log", stack=STACK, extra=extra)
        yield Env(project, cluster, studio, tmp, router, key, prometheus_url, log_files)
    finally:
        if studio is not None:
            studio.stop()
        for proc in started:
            _stop(proc)
        subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", "local", "down"],
            env=local_env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        project.pulumi("destroy", "--stack", STACK, "--yes", timeout=1500, check=False)
        project.pulumi("stack", "rm", STACK, "--yes", "--force", check=False)


def _pod_logs(cluster: Cluster, tmp: Path) -> dict[str, Path]:
    """A kwok Logs object per pod of alice, naming a file with two lines of that pod; waits until kwok serves them."""
    from kubernetes import client

    api = _kube(cluster)
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    replicas = _settled_replicas(cluster, f"{ONLINE}-{LOGGED}")
    selector = f"ml-endpoints.io/endpoint={ONLINE},ml-endpoints.io/deployment={LOGGED}"
    pods = [p["metadata"]["name"] for p in _running_pods(cluster, selector, want=replicas)]
    files = {}
    for pod in pods:
        files[pod] = tmp / f"{pod}.log"
        files[pod].write_text(_cri(f"serving started on {pod}") + _cri(f"ready on {pod}"))
        body = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": pod, "namespace": NAMESPACE},
            "spec": {"logs": [{"containers": [], "logsFile": str(files[pod]), "follow": True}]},
        }
        custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", NAMESPACE, "logs", body)
    for pod in pods:
        _wait(f"kwok serving the log of {pod}", lambda p=pod: f"ready on {p}" in _read_log(core, p), 120)
    return files


def _settled_replicas(cluster: Cluster, name: str) -> int:
    """The replicas the Deployment ``name`` settles at. An autoscaled Deployment is created without ``replicas``
    (its HPA owns the count), so it starts at 1 and the HPA raises it to ``minReplicas`` at its first sync, after
    ``pulumi up`` has returned: wait for that, else a pod appears after the test has listed them."""
    hpas = [h for h in list_objects(cluster.client(), "autoscaling/v2", "HorizontalPodAutoscaler", NAMESPACE)]
    floor = max(
        (h["spec"].get("minReplicas", 1) for h in hpas if h["spec"]["scaleTargetRef"]["name"] == name), default=1
    )

    def replicas() -> int | None:
        count = int(get_object(cluster.client(), "apps/v1", "Deployment", name, NAMESPACE)["spec"].get("replicas", 1))
        return count if count >= floor else None

    return int(_wait(f"Deployment {name} scaled to at least {floor} (its HPA's minimum)", replicas, 120))


def _read_log(core: Any, pod: str) -> str:
    try:
        return str(core.read_namespaced_pod_log(pod, NAMESPACE))
    except Exception:  # the kubelet (kwok) has no Logs object for it yet
        return ""


# ------------------------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if os.environ.get("ENDPOINTS_SKIP_BROWSER") == "1":
        pytest.skip("ENDPOINTS_SKIP_BROWSER=1: the studio's browser tests were skipped on purpose")
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("chromium is not installed: `apt-get install chromium` (scripts/test.sh does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, env: Env) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{env.studio.base}/?token={TOKEN}")
    page.locator("#backend").filter(has_text=f"cluster stack {STACK}").wait_for()
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"cluster-{name}.png"), full_page=True)


def _route_weights(env: Env) -> list[tuple[str, int]]:
    route = get_object(env.cluster.client(), "gateway.networking.k8s.io/v1", "HTTPRoute", ONLINE, NAMESPACE)
    [default] = [r for r in route["spec"]["rules"] if not any(m.get("headers") for m in r.get("matches", []))]
    return [(b["name"], b["weight"]) for b in default["backendRefs"]]


# ------------------------------------------------------------------------------------------------ the tests


def test_edit_traffic_previews_then_confirm_changes_the_split(page: Any, env: Env) -> None:
    page.locator(f'tr[data-endpoint="{BATCH}"]').wait_for()
    shot(page, "01-endpoints")
    page.locator(f'a[href="#/online/{ONLINE}"]').click()
    page.locator('#traffic-bar [data-deployment="alice"][data-percent="100"]').wait_for()
    assert _route_weights(env) == [(f"{ONLINE}-alice", 100)]  # bob at 0 % is left out of the route
    page.locator("#traffic-edit").click()
    assert page.locator("#traffic-save").inner_text() == "Preview"
    page.fill('input[name="traffic-alice"]', "70")
    page.fill('input[name="traffic-bob"]', "30")
    page.fill('input[name="mirror-bob"]', "0")
    page.locator("#traffic-save").click()
    page.locator("#preview-steps").wait_for(timeout=ENGINE_TIMEOUT_S * 1000)
    assert page.locator("#preview-changes li").all_inner_texts() == [
        f"ml-endpoints:overrides.{ONLINE}.traffic.alice: 100 -> 70",
        f"ml-endpoints:overrides.{ONLINE}.traffic.bob: 0 -> 30",
        f"ml-endpoints:overrides.{ONLINE}.mirrorTraffic.bob: 10 -> (unset)",
    ]
    route = page.locator('#preview-steps tr[data-op="update"]', has_text=f"{ONLINE}-route")
    assert route.locator("td").nth(1).inner_text() == "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
    assert "backendRefs" in route.locator("td").nth(3).inner_text()
    levels = page.locator("#preview-policies tbody tr td:first-child").all_inner_texts()
    policies = page.locator("#preview-policies tbody tr td:nth-child(2)").all_inner_texts()
    assert ("advisory", "prod-endpoint-private") in set(zip(levels, policies, strict=True)), (levels, policies)
    assert set(levels) == {"advisory"}
    # Previewed only: the live split on the page and on the API server is as it was.
    assert _route_weights(env) == [(f"{ONLINE}-alice", 100)]
    shot(page, "02-traffic-preview")
    page.locator("#preview-confirm").click()
    page.locator('#traffic-bar [data-deployment="bob"][data-percent="30"]').wait_for(timeout=ENGINE_TIMEOUT_S * 1000)
    bars = page.locator("#traffic-bar [data-deployment]")
    assert {b.get_attribute("data-deployment"): b.get_attribute("data-percent") for b in bars.all()} == {
        "alice": "70",
        "bob": "30",
    }
    assert _route_weights(env) == [(f"{ONLINE}-alice", 70), (f"{ONLINE}-bob", 30)]
    config = yaml.safe_load(env.studio.stack_file.read_text())["config"]
    assert config["ml-endpoints:overrides"][ONLINE]["traffic"] == {"alice": 70, "bob": 30}
    shot(page, "03-traffic-applied")


def test_logs_tab_follows_the_pods_of_a_deployment(page: Any, env: Env) -> None:
    pods = sorted(env.log_files)
    page.goto(f"{env.studio.base}/#/online/{ONLINE}/logs")
    page.locator("#log-name").wait_for()
    page.select_option("#log-name", LOGGED)
    text = page.locator("#log-text")
    text.filter(has_text=f"ready on {pods[-1]}").wait_for()
    live = [
        (p["metadata"]["name"], p["status"].get("phase"), p["metadata"].get("deletionTimestamp"))
        for p in list_objects(
            env.cluster.client(), "v1", "Pod", NAMESPACE, label_selector=f"ml-endpoints.io/deployment={LOGGED}"
        )
    ]
    assert [line for line in text.inner_text().splitlines() if line] == [
        line for pod in pods for line in (f"==> pod {pod} <==", f"serving started on {pod}", f"ready on {pod}")
    ], f"pods of {LOGGED} now (name, phase, deletion): {live}"
    page.check("#log-follow")
    page.locator("#log-state").filter(has_text="following").wait_for()
    target = pods[0]
    with env.log_files[target].open("a") as f:  # the runtime appends a line to one pod's log, stamped now
        f.write(_cri("followed-in-the-browser on the cluster"))
    text.filter(has_text=f"{target} | followed-in-the-browser on the cluster").wait_for()
    assert text.inner_text().count("followed-in-the-browser") == 1  # once, nothing repeated
    shot(page, "04-logs")


def test_metrics_tab_draws_prometheus_charts(page: Any, env: Env) -> None:
    headers = {"authorization": f"Bearer {env.key}", "content-type": "application/json"}
    with httpx.Client(base_url=env.router, timeout=30, trust_env=False) as client:

        def load() -> None:
            for i in range(10):
                for deployment in ("alice", "bob"):
                    pinned = {**headers, "azureml-model-deployment": deployment}
                    assert client.post("/score", json={"i": i}, headers=pinned).status_code == 200
            # A body the scoring script cannot read: the endpoint answers a 4xx, counted at alice.
            bad = client.post("/score", content=b"not json", headers={**headers, "azureml-model-deployment": "alice"})
            assert 400 <= bad.status_code < 500, bad.text

        page.goto(f"{env.studio.base}/#/online/{ONLINE}/metrics")
        page.locator("#charts .chart-panel").first.wait_for()
        rps = page.locator('#charts .chart-panel[data-title="Requests per second"] polyline[data-series="alice"]')
        fours = page.locator(
            '#charts .chart-panel[data-title="Responses by status class"] polyline[data-series="alice 4xx"]'
        )

        def drawn() -> bool:
            load()
            return (
                rps.count() == 1
                and int(rps.get_attribute("data-points") or 0) >= 2
                and fours.count() == 1
                and int(fours.get_attribute("data-points") or 0) >= 2
            )

        _wait("points from Prometheus on the requests/s and status charts", drawn, 180)
    series = page.locator('#charts .chart-panel[data-title="Requests per second"] polyline').evaluate_all(
        "els => els.map(e => e.dataset.series)"
    )
    assert sorted(series) == ["alice", "bob"]  # the decoy namespace's carol is not this stack's
    assert (
        page.locator("#metrics-note")
        .inner_text()
        .startswith(f"From Prometheus at {env.prometheus} (namespace {NAMESPACE})")
    )
    with env.studio.client() as c:
        m = c.get(f"/api/endpoints/{ONLINE}/metrics").json()
        listed = {e["name"]: e for e in c.get("/api/endpoints").json()["endpoints"]}
    assert m["source"] == "prometheus" and sorted(m["deployments"]) == ["alice", "bob"]
    assert any(
        p["rps"] > 0 and p["p50_ms"] is not None and p["p99_ms"] is not None and p["p99_ms"] >= p["p50_ms"]
        for p in m["deployments"]["alice"]
    ), m["deployments"]["alice"]
    assert any(p["by_class"].get("4xx", 0) > 0 for p in m["deployments"]["alice"])
    assert listed[ONLINE]["requests_per_second"] > 0 and listed[BATCH]["requests_per_second"] is None
    shot(page, "05-metrics")


def _admit_and_run(env: Env, job_id: str, score: Path) -> None:
    """What Kueue and the runner pods would do for the Job the job API created: the real runner runs each instance
    with the Job's own settings (the test's scoring script), then the Job is admitted and kwok completes it."""
    client = env.cluster.client()
    job = get_object(client, "batch/v1", "Job", job_id, NAMESPACE)
    assert job["spec"]["suspend"] is True  # queued: nothing runs before admission
    [runner] = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "runner"]
    settings = json.loads(next(e["value"] for e in runner["env"] if e["name"] == "ENDPOINTS_BATCH_SETTINGS"))
    model = env.tmp / "batch-model"
    model.mkdir(exist_ok=True)
    runners = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.batch.runner",
                "--entry-script",
                str(score),
                "--model-dir",
                str(model),
                "--instance-index",
                str(index),
            ],
            env={**os.environ, "ENDPOINTS_BATCH_SETTINGS": json.dumps(settings)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index in range(int(settings["instance_count"]))
    ]
    try:
        codes = [r.wait(300) for r in runners]
    finally:
        for r in runners:
            _stop(r)
    assert codes == [0] * len(runners), codes
    client.resources.get(api_version="batch/v1", kind="Job").patch(
        name=job_id, namespace=NAMESPACE, body={"spec": {"suspend": False}}, content_type="application/merge-patch+json"
    )


def test_batch_job_invoked_from_the_page_reaches_completed(page: Any, env: Env) -> None:
    score = env.tmp / "batch-code" / "score.py"
    score.parent.mkdir(exist_ok=True)
    score.write_text(BATCH_SCORE)
    inputs = make_inputs(env.tmp / "batch-in", 8, bad={5})
    page.locator(f'a[href="#/batch/{BATCH}"]').click()
    page.fill("#job-input", str(inputs))
    page.fill("#job-id", "ui-job")
    page.locator("#job-submit").click()
    row = page.locator('tr[data-job="ui-job"]')
    row.wait_for()
    assert row.get_attribute("data-status") == "Queued"
    _admit_and_run(env, "ui-job", score)
    page.locator('tr[data-job="ui-job"][data-status="Completed"]').wait_for(timeout=300_000)
    assert "4/4 mini-batches · 6 rows" in row.inner_text()
    row.locator("button.link").click()
    failures = page.locator("#job-failures tbody tr")
    failures.first.wait_for()
    cells = failures.first.inner_text().split("\t")
    assert (cells[0], cells[-1]) == ("2", "ValueError: cannot read 00005-bad.txt"), cells
    with page.expect_download() as download:
        row.locator("text=Download output").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert sorted(lines) == sorted(f"{i:05d}-f.txt,{i}" for i in range(8) if i not in (4, 5))
    shot(page, "06-batch-completed")
    # Another job, canceled from the page while it waits in the queue: its Job is suspended and marked.
    page.fill("#job-id", "ui-job-canceled")
    page.locator("#job-submit").click()
    queued = page.locator('tr[data-job="ui-job-canceled"][data-status="Queued"]')
    queued.wait_for()
    queued.locator("button.danger").click()
    page.locator('tr[data-job="ui-job-canceled"][data-status="Canceled"]').wait_for()
    job = get_object(env.cluster.client(), "batch/v1", "Job", "ui-job-canceled", NAMESPACE)
    assert job["spec"]["suspend"] is True and "ml-endpoints.io/canceled" in job["metadata"]["annotations"]
    shot(page, "07-batch-canceled")
    keys = _secret_keys(env.cluster, BATCH)
    studio_output = env.studio.log.read_text()
    assert all(key not in studio_output for key in keys.values())
