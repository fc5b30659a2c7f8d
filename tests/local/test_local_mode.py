"""`endpoints local ...`, `invoke`, `get-credentials` as real processes on a small two-deployment project."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]

SCORE = textwrap.dedent(
    """
    import json, os

    def init():
        if os.environ.get("INIT_SLEEP"):
            import time
            time.sleep(float(os.environ["INIT_SLEEP"]))
        if os.environ.get("FAIL_INIT"):
            raise RuntimeError("init failed on purpose")

    def run(raw):
        return {"deployment": os.environ["SERVICE_VERSION"], "color": os.environ.get("COLOR"),
                "endpoint": os.environ["SERVICE_NAME"], "body": json.loads(raw)}
    """
)


def deployment_yaml(name: str, color: str, extra: str = "") -> str:
    return (
        textwrap.dedent(
            f"""\
        name: {name}
        endpoint_name: shop
        code_configuration:
          code: ../code
          scoring_script: score.py
        environment:
          image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
        instance_type: Standard_DS3_v2
        environment_variables:
          COLOR: {color}
        """
        )
        + extra
    )


def endpoint_yaml(traffic: dict[str, int], mirror: dict[str, int] | None = None, auth: str = "key") -> str:
    text = f"name: shop\nauth_mode: {auth}\ntraffic:\n" + "".join(f"  {k}: {v}\n" for k, v in traffic.items())
    if mirror:
        text += "mirror_traffic:\n" + "".join(f"  {k}: {v}\n" for k, v in mirror.items())
    return text


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "code" / "score.py").write_text(SCORE)
    (root / "endpoint.yml").write_text(endpoint_yaml({"blue": 90, "green": 10}))
    (root / "deployments" / "blue.yml").write_text(deployment_yaml("blue", "blue"))
    (root / "deployments" / "green.yml").write_text(deployment_yaml("green", "green"))
    return root


@pytest.fixture
def cli(tmp_path: Path):
    state = tmp_path / "state"
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(state), "COLUMNS": "250"}

    def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert proc.returncode == 0, f"{args}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    run.state = state  # type: ignore[attr-defined]
    run.env = env  # type: ignore[attr-defined]
    yield run
    subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", "local", "down"],
        env=env,
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )


def _state(cli) -> dict:
    return json.loads((cli.state / "shop" / "state.json").read_text())


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


def _key(cli) -> str:
    return json.loads(cli("get-credentials", "shop").stdout)["primaryKey"]


def test_up_detach_serves_with_key_auth_split_and_owner_only_state(project, cli):
    up = cli("local", "up", str(project), "--detach", "--port", "0", "--json")
    summary = json.loads(up.stdout)
    uri = summary["scoring_uri"]
    assert uri.startswith("http://127.0.0.1:") and uri.endswith("/score")
    assert summary["swagger_uri"] == uri.replace("/score", "/swagger.json")
    assert summary["traffic"] == {"blue": 90, "green": 10}

    # Owner-only state: folders 0700, files 0600, keys made by `secrets`.
    shop = cli.state / "shop"
    for folder in (cli.state, shop, shop / "keys", shop / "logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in [shop / "state.json", shop / "routes.json", *(shop / "keys").iterdir(), *(shop / "logs").iterdir()]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    creds = json.loads(cli("get-credentials", "shop").stdout)
    assert set(creds) == {"primaryKey", "secondaryKey"}
    assert len(creds["primaryKey"]) >= 40 and creds["primaryKey"] != creds["secondaryKey"]
    assert creds["primaryKey"] not in (shop / "state.json").read_text() + (shop / "routes.json").read_text()

    with httpx.Client(timeout=10) as client:
        r = client.post(uri, json={"x": 1})
        assert r.status_code == 401
        for key in (creds["primaryKey"], creds["secondaryKey"]):
            r = client.post(uri, json={"x": 1}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
        counts: Counter[str] = Counter()
        for _ in range(200):
            r = client.post(uri, json={"x": 2}, headers={"Authorization": f"Bearer {creds['primaryKey']}"})
            body = r.json()
            assert body["deployment"] == r.headers["azureml-model-deployment"] == body["color"]
            assert body["endpoint"] == "shop" and body["body"] == {"x": 2}
            counts[body["deployment"]] += 1
    assert abs(counts["blue"] / 200 - 0.9) <= 0.05 and counts["blue"] + counts["green"] == 200

    status = json.loads(cli("local", "status", "--json").stdout)[0]
    assert status["router_state"] == "running"
    assert [(d["deployment"], d["state"], d["traffic"]) for d in status["deployment_states"]] == [
        ("blue", "ready", 90),
        ("green", "ready", 10),
    ]
    pids = [d["pid"] for d in status["deployment_states"]] + [status["router"]["pid"]]
    down = cli("local", "down")
    assert "stopped 3 process(es)" in down.stdout
    assert not any(_pid_alive(p) for p in pids)
    # Keys survive `down`: the next `up` keeps the same credentials.
    assert json.loads(cli("get-credentials", "shop").stdout) == creds


def test_invoke_pins_and_reports_errors(project, cli, tmp_path):
    cli("local", "up", str(project), "--detach", "--port", "0")
    request = tmp_path / "req.json"
    request.write_text('{"hello": "world"}')
    out = cli("invoke", "shop", "--request-file", str(request), "--deployment", "green")
    assert json.loads(out.stdout) == {
        "deployment": "green",
        "color": "green",
        "endpoint": "shop",
        "body": {"hello": "world"},
    }
    assert "HTTP 200 from deployment green" in out.stderr
    bad = cli("invoke", "shop", "--request-file", str(request), "--deployment", "nope", check=False)
    assert bad.returncode == 1
    assert json.loads(bad.stdout) == {
        "error": "endpoint 'shop' has no deployment named 'nope' (deployments: blue, green)"
    }
    logs = cli("local", "logs", "green", "--tail", "5")
    assert '"route":"/score"' in logs.stdout
    missing = cli("local", "logs", "nope", check=False)
    assert missing.returncode == 1
    assert "error: no log for 'nope' (logs: blue, green, router)" in missing.stderr
    unknown = cli("invoke", "other", "--request-file", str(request), check=False)
    assert unknown.returncode == 1
    assert "no local endpoint named 'other'" in unknown.stderr


def test_update_applies_traffic_without_restart_and_restarts_only_changed(project, cli):
    cli("local", "up", str(project), "--detach", "--port", "0")
    before = _state(cli)
    (project / "endpoint.yml").write_text(endpoint_yaml({"blue": 100, "green": 0}, {"green": 20}))
    cli("local", "update", str(project))
    after = _state(cli)
    assert after["deployments"] == before["deployments"]  # same pids, ports, fingerprints
    assert after["router"] == before["router"]
    assert (after["traffic"], after["mirror_traffic"]) == ({"blue": 100, "green": 0}, {"green": 20})
    uri = f"http://127.0.0.1:{after['router']['port']}/score"
    key = _key(cli)
    with httpx.Client(timeout=10) as client:
        seen = Counter(
            client.post(uri, json={}, headers={"Authorization": f"Bearer {key}"}).headers["azureml-model-deployment"]
            for _ in range(100)
        )
    assert seen == {"blue": 100}
    time.sleep(0.5)
    green_log = (cli.state / "shop" / "logs" / "green.log").read_text()
    assert green_log.count('"route":"/score"') == 20  # the mirrored copies

    # A changed deployment spec restarts that deployment only; the old process is stopped.
    (project / "deployments" / "green.yml").write_text(deployment_yaml("green", "teal"))
    cli("local", "update", str(project))
    changed = _state(cli)
    assert changed["deployments"]["blue"] == after["deployments"]["blue"]
    assert changed["deployments"]["green"]["pid"] != after["deployments"]["green"]["pid"]
    assert not _pid_alive(after["deployments"]["green"]["pid"])
    with httpx.Client(timeout=10) as client:
        r = client.post(uri, json={}, headers={"Authorization": f"Bearer {key}", "azureml-model-deployment": "green"})
    assert r.json()["color"] == "teal"


def test_crashed_deployment_is_reported_and_restarted_by_up(project, cli):
    cli("local", "up", str(project), "--detach", "--port", "0")
    blue = _state(cli)["deployments"]["blue"]
    os.kill(blue["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _pid_alive(blue["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = cli("local", "status", check=False)
    assert status.returncode == 1
    assert "crashed" in status.stdout
    assert "`endpoints local up ENDPOINT_DIR` restarts them" in status.stderr
    up = cli("local", "up", str(project), "--detach")
    assert "deployment blue is not running (crashed or stopped): starting it" in up.stderr
    rows = json.loads(cli("local", "status", "--json").stdout)[0]["deployment_states"]
    assert [r["state"] for r in rows] == ["ready", "ready"]


def test_foreground_up_stops_everything_on_ctrl_c(project, cli, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "endpoints.cli.main", "local", "up", str(project), "--port", "0"],
        cwd=tmp_path,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (cli.state / "shop" / "state.json").is_file() or _state(cli).get("router") is None:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        state = _state(cli)
        assert all(_pid_alive(r["pid"]) for r in [*state["deployments"].values(), state["router"]])
        # In the foreground the supervisor restarts a crashed deployment by itself.
        os.kill(state["deployments"]["blue"]["pid"], signal.SIGKILL)
        while _state(cli)["deployments"]["blue"]["pid"] == state["deployments"]["blue"]["pid"]:
            assert time.monotonic() < deadline, "blue was not restarted"
            time.sleep(0.1)
        state = _state(cli)
        pids = [r["pid"] for r in state["deployments"].values()] + [state["router"]["pid"]]
        assert all(_pid_alive(p) for p in pids)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Ctrl-C stops the endpoint" in err and "stopping..." in err
    assert "blue exited (status -9); restarting it" in err
    assert not any(_pid_alive(p) for p in pids)
    assert _state(cli)["deployments"] == {}


def test_failing_init_fails_up_with_the_log_and_leaves_nothing_running(project, cli):
    (project / "deployments" / "green.yml").write_text(
        deployment_yaml("green", "green").replace("  COLOR: green\n", "  COLOR: green\n  FAIL_INIT: '1'\n")
    )
    up = cli("local", "up", str(project), "--detach", "--port", "0", check=False)
    assert up.returncode == 1
    assert "error: deployment green exited during start; last lines of" in up.stderr
    assert "init failed on purpose" in up.stderr
    state = _state(cli) if (cli.state / "shop" / "state.json").is_file() else {"deployments": {}}
    assert "green" not in state["deployments"]


def test_aml_token_credentials(project, cli):
    (project / "endpoint.yml").write_text(endpoint_yaml({"blue": 100, "green": 0}, auth="aml_token"))
    summary = json.loads(cli("local", "up", str(project), "--detach", "--port", "0", "--json").stdout)
    creds = json.loads(cli("get-credentials", "shop").stdout)
    assert set(creds) >= {"accessToken", "tokenType", "expiryTimeUtc"}
    with httpx.Client(timeout=10) as client:
        ok = client.post(summary["scoring_uri"], json={}, headers={"Authorization": f"Bearer {creds['accessToken']}"})
        assert ok.status_code == 200
        assert client.post(summary["scoring_uri"], json={}, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_bad_folder_and_bad_spec(cli, tmp_path, project):
    missing = cli("local", "up", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2
    assert f"Invalid value for ENDPOINT_DIR: {tmp_path / 'nope'}: no such folder" in missing.stderr
    (project / "endpoint.yml").write_text(endpoint_yaml({"blue": 90, "green": 20}))
    bad = cli("local", "up", str(project), "--detach", check=False)
    assert bad.returncode == 1
    assert "traffic: got 90+20=110; live traffic must sum to 0 or 100" in bad.stderr


def _listener() -> tuple[object, int]:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_up_onto_a_busy_port_keeps_the_running_endpoint(project, cli):
    """Issue 13 item 14: `up --port BUSY` used to stop the healthy router (and, in the foreground, everything)."""
    summary = json.loads(cli("local", "up", str(project), "--detach", "--port", "0", "--json").stdout)
    before = _state(cli)
    sock, busy = _listener()
    try:
        for detach in ([], ["--detach"]):
            up = cli("local", "up", str(project), "--port", str(busy), *detach, check=False)
            assert up.returncode == 1, up.stdout + up.stderr
            assert up.stderr.strip() == (
                f"error: port {busy} is in use; choose another with --port (0 picks a free one); nothing was changed"
            )
    finally:
        sock.close()
    after = _state(cli)
    assert after["router"] == before["router"] and after["deployments"] == before["deployments"]
    assert all(_pid_alive(r["pid"]) for r in [after["router"], *after["deployments"].values()])
    ready = httpx.get(summary["scoring_uri"].replace("/score", "/ready"), timeout=10)
    assert ready.status_code == 200


def test_fresh_up_onto_a_busy_port_starts_nothing(project, cli):
    sock, busy = _listener()
    try:
        up = cli("local", "up", str(project), "--detach", "--port", str(busy), check=False)
    finally:
        sock.close()
    assert up.returncode == 1
    assert f"error: port {busy} is in use" in up.stderr
    assert not (cli.state / "shop" / "logs" / "blue.log").exists()  # no serving process was started


def _serving_pids(code_dir: Path) -> list[int]:
    """Processes whose working folder is the project's code folder (the serving processes of this test)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "cwd") == str(code_dir) and _pid_alive(int(proc.name)):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_processes_of_an_interrupted_start_are_found_by_down(project, cli):
    """Every serving process is recorded when it is spawned: killing `up` mid-start leaves nothing `down` misses."""
    for name in ("blue", "green"):
        (project / "deployments" / f"{name}.yml").write_text(
            deployment_yaml(name, name).replace(f"  COLOR: {name}\n", f"  COLOR: {name}\n  INIT_SLEEP: '30'\n")
        )
    up = subprocess.Popen(
        [sys.executable, "-m", "endpoints.cli.main", "local", "up", str(project), "--detach", "--port", "0"],
        cwd=project.parent,
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    code_dir = (project / "code").resolve()
    try:
        deadline = time.monotonic() + 60
        while len(_serving_pids(code_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_serving_pids(code_dir)) >= 2
    finally:
        up.kill()  # SIGKILL: no cleanup of its own
        up.wait(10)
    cli("local", "down")
    deadline = time.monotonic() + 30
    while _serving_pids(code_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _serving_pids(code_dir) == []
