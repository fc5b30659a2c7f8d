"""Every dashboard panel query and alert expression returns data from a real Prometheus (Debian's binary) that
scrapes a real local endpoint (router + two serving processes) under a bounded load.

Prometheus runs on 127.0.0.1 with a temporary config scraping each deployment every second, with the ``endpoint``
and ``deployment`` labels the cluster's PodMonitor adds by relabelling. The load mixes good requests, model errors
(424) and bursts above the deployments' one-request concurrency (429 overloaded), so that the alert expressions
(thresholds set to 0 here) have something to fire on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from components.builders.monitoring import alert_rules, endpoint_rates_query, guard_queries, prometheus_rule, queries
from endpoints.studio.metrics import PrometheusCharts

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


@pytest.fixture(autouse=True)
def _needs_prometheus() -> None:
    """scripts/test.sh installs Debian's prometheus; missing, these tests fail rather than skip."""
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.fail("prometheus is not installed (apt-get install prometheus)")


WINDOW = "30s"
# Panels that must show both deployments (each scraped separately: both series appear, not just the first).
PER_DEPLOYMENT = ("Requests/s by status class", "Latency p99 (s)", "In flight")

SCORE = textwrap.dedent(
    """
    import json, time

    def init():
        pass

    def run(raw):
        body = json.loads(raw)
        time.sleep(body.get("sleep", 0))
        if body.get("fail"):
            raise RuntimeError("model error on purpose")
        return {"ok": True}
    """
)


def _deployment(name: str) -> str:
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
        request_settings:
          max_concurrent_requests_per_instance: 1
          max_queue_wait_ms: 20
        """
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(url: str, key: str, stop: threading.Event, index: int) -> None:
    """Bounded: at most 600 requests or 90 s; every 5th fails in the model, bursts of 3 overload the deployments."""
    headers = {"authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 90
    with httpx.Client(timeout=10, trust_env=False) as client:
        for n in range(600):
            if stop.is_set() or time.monotonic() > deadline:
                return
            body = {"fail": n % 5 == 0, "sleep": 0.05 if index else 0}
            with contextlib.suppress(httpx.HTTPError):
                client.post(f"{url}/score", json=body, headers=headers)


def test_dashboard_and_alert_queries_return_data(tmp_path: Path):
    root = tmp_path / "shop"
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "code" / "score.py").write_text(SCORE)
    (root / "endpoint.yml").write_text("name: shop\nauth_mode: key\ntraffic:\n  blue: 50\n  green: 50\n")
    for name in ("blue", "green"):
        (root / "deployments" / f"{name}.yml").write_text(_deployment(name))
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(tmp_path / "state")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    rules = tmp_path / "rules.yml"
    limits = {"max_failed_ratio": 0.0, "max_p99_seconds": 0.0, "window": WINDOW, "for_": "0s"}
    rules.write_text(yaml.safe_dump(prometheus_rule("shop", "ml-endpoints", **limits)["spec"]))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    assert cli("local", "up", str(root), "--port", "0", "--detach").returncode == 0
    stop = threading.Event()
    threads: list[threading.Thread] = []
    prometheus: subprocess.Popen[bytes] | None = None
    opened: list = []
    try:
        state = json.loads((tmp_path / "state" / "shop" / "state.json").read_text())
        key = json.loads(cli("get-credentials", "shop").stdout)["primaryKey"]
        url = f"http://127.0.0.1:{state['router']['port']}"
        threads = [threading.Thread(target=_load, args=(url, key, stop, i), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {
                    "job_name": "shop",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{rec['port']}"],
                            "labels": {"endpoint": "shop", "deployment": name, "namespace": "ml-endpoints"},
                        }
                        for name, rec in state["deployments"].items()
                    ],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        log = (tmp_path / "prometheus.log").open("wb")  # closed below, after Prometheus stops
        opened.append(log)
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = f"http://127.0.0.1:{port}/api/v1"
        guard_requests, guard_buckets = guard_queries("shop", "ml-endpoints")
        expressions = {
            **queries("shop", WINDOW, "ml-endpoints"),
            **{r["alert"]: r["expr"] for r in alert_rules("shop", namespace="ml-endpoints", **limits)},
            "rollout guard: requests": guard_requests,
            "rollout guard: buckets": guard_buckets,
            "studio: requests/s by endpoint": endpoint_rates_query("ml-endpoints", WINDOW),
        }
        missing = dict(expressions)
        results: dict[str, list] = {}
        deadline = time.monotonic() + 90
        with httpx.Client(timeout=5, trust_env=False) as client:
            while missing and time.monotonic() < deadline:
                time.sleep(1)
                for title, expr in list(missing.items()):
                    try:
                        body = client.get(f"{api}/query", params={"query": expr}).json()
                    except (httpx.HTTPError, ValueError):
                        break  # not up yet
                    assert body["status"] == "success", (title, expr, body)
                    result = body["data"]["result"]
                    seen = {r["metric"].get("deployment") for r in result}
                    if result and (title not in PER_DEPLOYMENT or seen == {"blue", "green"}):
                        results[title] = result
                        del missing[title]
        assert not missing, f"no data for {sorted(missing)}"
        # The studio's charts over a stack: the same dashboard panels as range queries, by deployment.
        charts = PrometheusCharts(f"http://127.0.0.1:{port}", lambda: "ml-endpoints", interval_s=1.0, keep_s=60.0)
        opened.append(charts.prometheus)

        def drawn() -> dict[str, list] | None:
            series = charts.endpoint_series("shop")
            full = all(
                any(p["by_class"].get("2xx", 0) > 0 and p["p99_ms"] is not None for p in series.get(d, []))
                and any(p["by_class"].get("4xx", 0) > 0 for p in series.get(d, []))
                for d in ("blue", "green")
            )
            return series if full else None

        chart_deadline = time.monotonic() + 60
        while (series := drawn()) is None:
            assert time.monotonic() < chart_deadline, charts.endpoint_series("shop")
            time.sleep(1)
        assert sorted(series) == ["blue", "green"]
        assert all(p["rps"] == round(sum(p["by_class"].values()), 3) for ps in series.values() for p in ps)
        assert charts.current_rps("shop") and charts.current_rps("shop") > 0
        assert charts.current_rps("other") is None
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        for f in opened:
            f.close()
        cli("local", "down")
    # Per deployment: both deployments appear in the per-deployment panels.
    for title in PER_DEPLOYMENT:
        assert {r["metric"]["deployment"] for r in results[title]} == {"blue", "green"}, (title, results[title])
    classes = {r["metric"]["status_class"] for r in results["Requests/s by status class"]}
    assert {"2xx", "4xx"} <= classes, classes
