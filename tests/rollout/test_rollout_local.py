"""`endpoints rollout DIR DEPLOYMENT` on a real local endpoint (router + serving processes) under a bounded load."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

# The challenger fails every request while the file named by FLIP_FILE exists: errors injected mid-rollout.
SCORE = textwrap.dedent(
    """
    import json, os

    def init():
        pass

    def run(raw):
        flip = os.environ.get("FLIP_FILE")
        if flip and os.path.exists(flip):
            raise RuntimeError("injected failure")
        return {"deployment": os.environ["SERVICE_VERSION"]}
    """
)


def deployment_yaml(name: str, flip: Path) -> str:
    return textwrap.dedent(
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
          FLIP_FILE: "{flip}"
        """
    )


ENDPOINT = "name: shop\nauth_mode: key\n# blue is the champion\ntraffic:\n  blue: 100\n  green: 0\n"


@dataclass
class Load:
    """A client thread: bounded in count and time, stops by itself; records (status, deployment) per request."""

    url: str
    key: str
    # Bounds that outlast any rollout of these tests, fast or loaded machine: the load must still run in the last
    # step (4000 requests / 120 s ran out before step 100% on both kinds of machine).
    max_requests: int = 200_000
    max_seconds: float = 280.0
    results: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self.stop.is_set() and len(self.results) < self.max_requests and time.monotonic() < deadline:
                try:
                    r = client.post(f"{self.url}/score", json={"x": 1}, headers=headers)
                    self.results.append(
                        (time.monotonic(), r.status_code, r.headers.get("azureml-model-deployment", ""))
                    )
                except httpx.HTTPError:
                    self.results.append((time.monotonic(), 0, ""))

    def statuses_since(self, t: float) -> Counter[tuple[int, str]]:
        return Counter((s, d) for at, s, d in list(self.results) if at >= t)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[dict]:
    root = tmp_path / "shop"
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "code" / "score.py").write_text(SCORE)
    (root / "endpoint.yml").write_text(ENDPOINT)
    flip = tmp_path / "green-fails"
    (root / "deployments" / "blue.yml").write_text(deployment_yaml("blue", tmp_path / "blue-never-fails"))
    (root / "deployments" / "green.yml").write_text(deployment_yaml("green", flip))
    state = tmp_path / "state"
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(state), "COLUMNS": "250"}

    def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    up = cli("local", "up", str(root), "--port", "0", "--detach")
    assert up.returncode == 0, up.stderr
    st = json.loads((state / "shop" / "state.json").read_text())
    key = json.loads(cli("get-credentials", "shop").stdout)["primaryKey"]
    load = Load(f"http://127.0.0.1:{st['router']['port']}", key)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        yield {"root": root, "cli": cli, "load": load, "flip": flip, "routes": state / "shop" / "routes.json"}
    finally:
        load.stop.set()
        thread.join(30)
        cli("local", "down")


def _traffic(routes: Path) -> dict[str, int]:
    return json.loads(routes.read_text())["table"]["traffic"]


def _rollout(shop: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ("rollout", str(shop["root"]), "green", "--bake", "1.5s", "--min-requests", "5", "--json", *extra)
    return shop["cli"](*args)


def test_good_challenger_reaches_100_and_the_endpoint_file_is_written(shop):
    proc = _rollout(shop, "--steps", "25,50,100", "--mirror", "50", "--max-p99-ms", "+2000")
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["ok"] is True and outcome["reason"] is None
    assert outcome["traffic"] == {"blue": 0, "green": 100}
    events = [(e["event"], e.get("percent") or e.get("phase")) for e in outcome["timeline"]]
    assert events == [
        ("start", None),
        ("mirror", None),
        ("passed", "mirror"),
        ("step", 25),
        ("passed", "step 25%"),
        ("step", 50),
        ("passed", "step 50%"),
        ("step", 100),
        ("passed", "step 100%"),
        ("done", None),
    ]
    assert _traffic(shop["routes"]) == {"blue": 0, "green": 100}
    # Round-trip edit: the comment stays, only the weights change.
    assert (shop["root"] / "endpoint.yml").read_text() == ENDPOINT.replace("100", "0").replace("green: 0", "green: 100")
    errors = [r for r in shop["load"].results if r[1] != 200]
    assert errors == []


def test_errors_injected_mid_way_roll_back_within_the_step(shop):
    def flip_at_50() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _traffic(shop["routes"]).get("green") == 50:
                shop["flip"].write_text("fail now")
                return
            time.sleep(0.05)

    flipper = threading.Thread(target=flip_at_50, daemon=True)
    flipper.start()
    proc = _rollout(shop, "--steps", "25,50,100", "--max-error-rate", "0.05")
    flipper.join(5)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["ok"] is False
    assert outcome["reason"].startswith("step 50%: error rate "), outcome["reason"]
    assert "is above --max-error-rate 0.05 = 5.0%" in outcome["reason"]
    events = [e["event"] for e in outcome["timeline"]]
    # Caught in the step where the failure began, before any later step: within one bake interval.
    assert events == ["start", "step", "passed", "step", "breach", "rollback"]
    assert outcome["timeline"][-1]["traffic"] == {"blue": 100, "green": 0}
    assert _traffic(shop["routes"]) == {"blue": 100, "green": 0}
    assert (shop["root"] / "endpoint.yml").read_text() == ENDPOINT
    assert "rolled back: step 50%: error rate" in proc.stderr
    # After the rollback, clients get the champion's answers only (and its error rate: none).
    after = time.monotonic() + 0.5  # the router applies the rollback on SIGHUP, asynchronously
    _wait_for_requests(shop["load"], after, 20)
    assert set(shop["load"].statuses_since(after)) == {(200, "blue")}


def test_bad_challenger_is_stopped_in_the_mirror_phase_and_clients_never_see_it(shop):
    shop["flip"].write_text("fail from the start")
    proc = _rollout(shop, "--steps", "50,100", "--mirror", "50")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    outcome = json.loads(proc.stdout)
    # Every call green ran failed; a mirrored copy it did not run (shed or timed out: copies come in bursts) is not
    # an error (5xx and 424 are), so the rate may fall short of 100 %.
    match = re.match(r"mirror: error rate [0-9.]+% \((\d+)/(\d+)\) is above --max-error-rate", outcome["reason"])
    assert match, outcome["reason"]
    assert 2 * int(match[1]) > int(match[2]), outcome["reason"]  # most of them (86 % seen under -n 2)
    assert [e["event"] for e in outcome["timeline"]] == ["start", "mirror", "breach", "rollback"]
    assert json.loads(shop["routes"].read_text())["table"]["mirror_traffic"] == {}
    assert {(s, d) for _, s, d in shop["load"].results} == {(200, "blue")}


def test_bad_options_name_the_option_and_value(shop):
    proc = _rollout(shop, "--steps", "10,5,100")
    assert proc.returncode == 2
    assert "--steps: got 5 after 10 in '10,5,100'; steps must increase" in proc.stderr
    proc = shop["cli"]("rollout", str(shop["root"]), "purple", "--json")
    assert proc.returncode == 2
    assert "error: endpoint shop: no deployment named 'purple' (deployments: blue, green)" in proc.stderr


def _wait_for_requests(load: Load, since: float, count: int) -> None:
    deadline = time.monotonic() + 30
    while sum(load.statuses_since(since).values()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
