"""The studio over a stack (``ClusterBackend``) where no Pulumi CLI runs: the Automation API's Stack is a stand-in
(as in tests/sdk/test_workspace.py), everything else is real.

The stack file lists two endpoints made here (``shop`` online, ``files-batch`` batch, key auth); the stand-in's
outputs give ``files-batch`` the URL of a real job API process (``python -m endpoints.local.batch_api``, key auth, real
runners), standing in for the cluster's (whose Jobs kwok completes without running anything: the cluster flow is in
tests/cluster/test_studio_cluster_browser.py). The studio app is served by uvicorn on a real socket and driven over
HTTP: the batch page's list, invoke, progress to Completed, failed mini-batches with their reasons, the output
download, cancel, the job API's refusals passed through, a regenerated key picked up after the job API's 401; the
Metrics tab without Prometheus (it says how to give one) and with one that does not answer (it says so); a follow
cursor the studio did not make refused.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from pulumi import automation as auto
from studio_helpers import REPO, make_batch_project, make_inputs, make_online_project, wait_for

from endpoints.sdk import Workspace
from endpoints.studio.app import build_app
from endpoints.studio.cluster import ClusterBackend, decode_cursor, encode_cursor

STACK = "studio"
TOKEN = "stand-in-stack-studio-token-0123"
KEY = "k" * 48
NEW_KEY = "n" * 48


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandInStack:
    """Answers ``outputs`` and ``export_stack`` like the Automation API's Stack (nothing deployed to look at)."""

    def __init__(self, jobs_uri: str) -> None:
        self.values = {
            "shop.scoringUri": auto.OutputValue("https://shop.studio.example.com/score", False),
            "shop.primaryKey": auto.OutputValue("p" * 48, True),
            "shop.secondaryKey": auto.OutputValue("s" * 48, True),
            "files-batch.jobsUri": auto.OutputValue(jobs_uri, False),
            "files-batch.primaryKey": auto.OutputValue(KEY, True),
            "files-batch.secondaryKey": auto.OutputValue("t" * 48, True),
        }

    def outputs(self) -> dict[str, auto.OutputValue]:
        return dict(self.values)

    def export_stack(self) -> auto.Deployment:
        return auto.Deployment(version=3, deployment={"resources": []})


@dataclass
class JobApi:
    proc: subprocess.Popen[bytes]
    url: str
    keys: Path
    state: Path


@dataclass
class Served:
    base: str
    stand_in: StandInStack
    api: JobApi
    root: Path
    backend: ClusterBackend

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"})


def _job_api(root: Path, project: Path) -> JobApi:
    keys = root / "keys"
    keys.mkdir()
    (keys / "primary").write_text(KEY)
    (keys / "secondary").write_text("t" * 48)
    port = _free_port()
    env = {**os.environ, "ENDPOINTS_AUTH_MODE": "key", "ENDPOINTS_KEYS_DIR": str(keys)}
    log = (root / "job-api.log").open("wb")
    argv = [sys.executable, "-m", "endpoints.local.batch_api", "--project", str(project)]
    argv += ["--state-dir", str(root / "batch-state"), "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child keeps its own descriptor
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (root / "job-api.log").read_text()
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/", timeout=2).status_code == 200
        return False

    wait_for(answers, timeout=60, what="the job API")
    return JobApi(proc, url, keys, root / "batch-state")


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="the studio app")
    return server, thread


def _project(root: Path) -> Path:
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    make_online_project(root / "shop")
    batch = make_batch_project(root / "files-batch", sleep_s=0.2)
    (batch / "endpoint.yml").write_text((batch / "endpoint.yml").read_text().replace("aad_token", "key"))
    (root / "stacks").mkdir()
    config = {
        "ml-endpoints:namespace": "ml-studio",
        "ml-endpoints:domain": "studio.example.com",
        "ml-endpoints:endpoints": ["shop", "files-batch"],
    }
    (root / "stacks" / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config}))
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = _project(tmp_path_factory.mktemp("stand-in-stack"))
    api = _job_api(root, root / "files-batch")
    stand_in = StandInStack(f"{api.url}/jobs")
    workspace = Workspace(STACK, root, stack_factory=lambda _ws: stand_in)
    port = _free_port()
    backend = ClusterBackend(workspace)
    server, thread = _serve(build_app(backend, TOKEN, port), port)
    try:
        yield Served(f"http://127.0.0.1:{port}", stand_in, api, root, backend)
    finally:
        server.should_exit = True
        thread.join(30)
        api.proc.send_signal(signal.SIGTERM)
        api.proc.wait(30)
        # Runners run in sessions of their own: stop any a test left running (by the pids the launcher recorded).
        for procs in api.state.glob("**/procs.json"):
            for proc in json.loads(procs.read_text()).get("processes", []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc["pid"], signal.SIGKILL)


def _job(c: httpx.Client, job_id: str) -> dict[str, Any]:
    r = c.get(f"/api/batch/files-batch/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_batch_job_through_the_stack_s_job_api(served: Served, tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in", 6, bad={3})
    with served.client() as c:
        page = c.get("/api/batch/files-batch")
        assert page.status_code == 200, page.text
        info = page.json()
        assert (info["kind"], info["state"], info["auth_mode"], info["stack"]) == ("batch", "Deployed", "key", STACK)
        assert (info["default_deployment"], info["deployments"], info["jobs"]) == ("nightly", ["nightly"], [])
        assert info["scoring_uri"] == f"{served.api.url}/jobs"
        submitted = c.post("/api/batch/files-batch/jobs", json={"input": str(inputs), "job_id": "stack-job"})
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["id"] == "stack-job"
        seen: list[str] = []

        def completed() -> dict[str, Any] | None:
            job = _job(c, "stack-job")
            seen.append(job["status"])
            return job if job["status"] == "Completed" else None

        job = wait_for(completed, timeout=120, what="the job Completed")
        assert set(seen) <= {"Queued", "Running", "Completed"}, seen
        assert (job["progress"]["done"], job["progress"]["total"], job["progress"]["rows"]) == (3, 3, 4)
        [failure] = job["counts"]["failures"]
        assert (failure["mini_batch"], failure["reason"]) == (1, "ValueError: cannot read 00003-bad.txt")
        listed = c.get("/api/batch/files-batch").json()["jobs"]
        assert [(j["id"], j["status"]) for j in listed] == [("stack-job", "Completed")]
        output = c.get("/api/batch/files-batch/jobs/stack-job/output")
        assert output.status_code == 200, output.text
        assert output.headers["content-disposition"] == 'attachment; filename="stack-job-predictions.csv"'
        assert sorted(output.text.splitlines()) == sorted(f"{i:05d}-f.txt,{i}" for i in (0, 1, 4, 5))
        logs = c.get("/api/batch/files-batch/jobs/stack-job/logs")
        assert logs.status_code == 200 and "summary: Completed" in logs.json()["logs"]["0"], logs.text
        # The job API's own refusals pass through with their status.
        again = c.post("/api/batch/files-batch/jobs/stack-job/cancel")
        assert again.status_code == 409, again.text
        assert "only Queued or Running jobs can be canceled" in again.json()["error"]
        missing = c.get("/api/batch/files-batch/jobs/nope")
        assert missing.status_code == 404 and "no batch job 'nope'" in missing.json()["error"], missing.text
        bad = c.post("/api/batch/files-batch/jobs", json={"input": str(inputs), "settings": {"mini_batch_size": 0}})
        assert bad.status_code == 400 and "mini_batch_size" in bad.json()["error"], bad.text
        online = c.get("/api/batch/shop")
        assert (online.status_code, online.json()) == (
            404,
            {"error": "endpoint shop is an online endpoint, not a batch endpoint"},
        )
    for answer in (page, submitted, output, logs, listed):
        assert KEY not in (answer.text if isinstance(answer, httpx.Response) else str(answer))


def test_cancel_and_a_regenerated_key(served: Served, tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in", 40)
    with served.client() as c:
        submitted = c.post(
            "/api/batch/files-batch/jobs",
            json={"input": str(inputs), "job_id": "long-job", "settings": {"mini_batch_size": 1}},
        )
        assert submitted.status_code == 202, submitted.text
        canceled = c.post("/api/batch/files-batch/jobs/long-job/cancel")
        assert canceled.status_code == 202 and canceled.json()["status"] == "Canceled", canceled.text
        assert _job(c, "long-job")["status"] == "Canceled"
        # The key is regenerated (the job API reads its key files per request; the stack exports the new one): the
        # studio's next call is refused with 401 once, then it reads the key again and goes on.
        (served.api.keys / "primary").write_text(NEW_KEY)
        served.stand_in.values["files-batch.primaryKey"] = auto.OutputValue(NEW_KEY, True)
        old = {"authorization": f"Bearer {KEY}"}
        wait_for(  # the job API re-reads its key files at most once a second
            lambda: httpx.get(f"{served.api.url}/jobs", headers=old, timeout=10).status_code == 401,
            timeout=30,
            what="the job API refusing the old key",
        )
        assert _job(c, "long-job")["status"] == "Canceled"


def test_metrics_without_prometheus_say_how_to_give_one(served: Served) -> None:
    with served.client() as c:
        m = c.get("/api/endpoints/shop/metrics")
    assert m.status_code == 200, m.text
    assert m.json() == {
        "interval_s": 5.0,
        "source": None,
        "note": f"no Prometheus for stack {STACK}: start the studio with --prometheus URL",
        "deployments": {},
    }


def test_metrics_from_a_prometheus_that_does_not_answer(served: Served) -> None:
    port = _free_port()  # nothing listens there
    workspace = Workspace(STACK, served.root, stack_factory=lambda _ws: served.stand_in)
    backend = ClusterBackend(workspace, prometheus=f"http://127.0.0.1:{port}")
    studio_port = _free_port()
    server, thread = _serve(build_app(backend, TOKEN, studio_port), studio_port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{studio_port}", timeout=60) as c:
            c.headers["Authorization"] = f"Bearer {TOKEN}"
            m = c.get("/api/endpoints/shop/metrics").json()
            listed = c.get("/api/endpoints").json()["endpoints"]
    finally:
        server.should_exit = True
        thread.join(30)
    assert (m["source"], m["deployments"]) == ("prometheus", {})
    assert m["note"].startswith(f"prometheus http://127.0.0.1:{port}: ConnectError: "), m["note"]
    assert [(e["name"], e["requests_per_second"]) for e in listed] == [("shop", None), ("files-batch", None)]


def test_a_follow_cursor_the_studio_did_not_make_is_refused(served: Served) -> None:
    with served.client() as c:
        r = c.get("/api/endpoints/shop/logs/blue/follow", params={"offset": "not-a-cursor"})
        unknown = c.get("/api/endpoints/shop/logs/nope/follow", params={"offset": encode_cursor({}, "x")})
    assert (r.status_code, r.json()) == (
        400,
        {"error": "offset: got 'not-a-cursor'; pass the offset of the studio's last log answer"},
    )
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no log for 'nope' (logs: blue, green)"})


def test_cursor_round_trip() -> None:
    last = {"shop-blue-7d9f-abcde": "2026-12-02T14:00:00.123456789", "shop-blue-7d9f-fghij": "2026-12-02T14:00:01.0"}
    assert decode_cursor(encode_cursor(last, "2026-12-02T13:59:59.000000000")) == (
        last,
        "2026-12-02T13:59:59.000000000",
    )


def test_reads_go_on_while_a_change_holds_the_stack(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preview or an apply holds the stack for minutes: meanwhile the batch page and the endpoint page answer with
    the stack as last read instead of waiting (every read here is past its 5 s)."""
    with served.client() as c:
        before = c.get("/api/batch/files-batch").json()
        monkeypatch.setattr("endpoints.studio.cluster.READ_TTL_S", 0.0)
        held, release = threading.Event(), threading.Event()

        def change() -> None:  # what a preview does: the stack's lock, for as long as the engine runs
            with served.backend._lock:
                held.set()
                release.wait(60)

        holder = threading.Thread(target=change, daemon=True)
        holder.start()
        try:
            assert held.wait(10)
            c.timeout = httpx.Timeout(10)
            page = c.get("/api/batch/files-batch")
            shown = c.get("/api/endpoints/shop")
        finally:
            release.set()
            holder.join(10)
    assert page.status_code == 200 and page.json()["jobs"] == before["jobs"], page.text
    assert shown.status_code == 200 and shown.json()["traffic"] == {"blue": 90, "green": 10}, shown.text


def _stamp(epoch: float) -> str:
    return (
        datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def test_logs_tail_and_follow_of_a_deployment_s_pods(served: Served, tmp_path: Path) -> None:
    """The Logs tab over a stack: the tail of each pod of the deployment, then what they log afterwards, as
    ``<pod> | <line>``, a pod that starts later included, nothing repeated. The Kubernetes API is the stand-in API
    server of tests/batch (pods by label, logs with timestamps), reached through a kubeconfig as the engine's is."""
    sys.path.insert(0, str(REPO / "tests" / "batch"))
    from fake_apiserver import FakeApiServer

    blue = {"ml-endpoints.io/endpoint": "shop", "ml-endpoints.io/deployment": "blue"}
    now = time.time()
    with FakeApiServer() as kube:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stand-in", "cluster": {"server": kube.url}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "stand-in", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        kube.pods[("ml-studio", "shop-blue-1")] = {
            "labels": blue,
            "log": f"{_stamp(now - 60)} started\n{_stamp(now - 30)} ready\n",
        }
        kube.pods[("ml-studio", "shop-green-1")] = {
            "labels": {**blue, "ml-endpoints.io/deployment": "green"},
            "log": f"{_stamp(now - 30)} green is not followed\n",
        }
        workspace = Workspace(
            STACK, served.root, env={"KUBECONFIG": str(kubeconfig)}, stack_factory=lambda _ws: served.stand_in
        )
        port = _free_port()
        server, thread = _serve(build_app(ClusterBackend(workspace), TOKEN, port), port)
        events: list[dict[str, Any]] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                c.headers["Authorization"] = f"Bearer {TOKEN}"
                tail = c.get("/api/endpoints/shop/logs/blue", params={"tail": "1"}).json()
                assert tail["text"] == "==> pod shop-blue-1 <==\nready\n"
                with c.stream("GET", "/api/endpoints/shop/logs/blue/follow", params={"offset": tail["offset"]}) as r:
                    assert r.status_code == 200
                    lines = r.iter_lines()
                    assert next(lines) == ": following"
                    later = time.time() + 1
                    kube.pods[("ml-studio", "shop-blue-1")]["log"] += f"{_stamp(later)} appended\n"
                    kube.pods[("ml-studio", "shop-blue-2")] = {  # a pod that started after the tail was read
                        "labels": blue,
                        "log": f"{_stamp(now - 120)} before the tail\n{_stamp(later)} late pod\n",
                    }
                    for line in lines:
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:]))
                            text = "".join(e["text"] for e in events)
                            if "appended" in text and "late pod" in text:
                                break
        finally:
            server.should_exit = True
            thread.join(30)
    assert "".join(e["text"] for e in events) in (
        "shop-blue-1 | appended\nshop-blue-2 | late pod\n",
        "shop-blue-2 | late pod\nshop-blue-1 | appended\n",
    )
    assert events[-1]["offset"] != tail["offset"]  # the cursor moved on
