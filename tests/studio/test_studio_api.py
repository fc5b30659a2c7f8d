"""The studio's HTTP API over real sockets: the `endpoints studio` process in front of a real local endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from studio_helpers import keys_of, make_inputs, wait_for

from endpoints.studio.app import csrf_token
from endpoints.studio.metrics import Scrape, parse_scrape, point_between, quantile

UNAUTHORIZED = {"error": "unauthorized: open the URL printed by `endpoints studio` (it carries the access token)"}


def _post(client: httpx.Client, token: str, path: str, **kw):
    return client.post(path, headers={"x-csrf-token": csrf_token(token), **kw.pop("headers", {})}, **kw)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/", id="page"),
        pytest.param("GET", "/static/studio.js", id="static"),
        pytest.param("GET", "/api/endpoints", id="list"),
        pytest.param("GET", "/api/endpoints/shop", id="show"),
        pytest.param("POST", "/api/endpoints/shop/traffic", id="traffic"),
        pytest.param("POST", "/api/endpoints/shop/invoke", id="invoke"),
        pytest.param("POST", "/api/endpoints/shop/keys/reveal", id="reveal"),
        pytest.param("POST", "/api/endpoints/shop/keys/regenerate", id="regenerate"),
        pytest.param("GET", "/api/endpoints/shop/logs/blue", id="logs"),
        pytest.param("GET", "/api/endpoints/shop/logs/blue/follow", id="follow"),
        pytest.param("GET", "/api/endpoints/shop/metrics", id="metrics"),
        pytest.param("GET", "/api/endpoints/shop/swagger.json", id="swagger"),
        pytest.param("GET", "/api/batch/files-batch", id="batch"),
        pytest.param("POST", "/api/batch/files-batch/jobs", id="batch-invoke"),
    ],
)
def test_every_route_needs_the_token(world, method, path):
    base = world.studio.base
    for headers in ({}, {"authorization": "Bearer wrong-token"}, {"cookie": "endpoints_studio_1=wrong"}):
        response = httpx.request(method, f"{base}{path}", headers=headers, timeout=10)
        assert response.status_code == 401, (headers, response.text)
        if path.startswith("/api/"):
            assert response.json() == UNAUTHORIZED
        else:
            assert "Unauthorized: open the URL printed by `endpoints studio`" in response.text
    wrong = httpx.get(f"{base}/?token=not-the-token", timeout=10)
    assert wrong.status_code == 401


def test_token_url_sets_a_strict_cookie_and_drops_the_token_from_the_address(world):
    studio = world.studio
    with httpx.Client(base_url=studio.base, timeout=10) as client:
        first = client.get(f"/?token={studio.token}&x=1")
        assert first.status_code == 303
        assert first.headers["location"] == "/?x=1"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"endpoints_studio_{studio.base.rsplit(':', 1)[1]}={studio.token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        page = client.get("/")
        assert page.status_code == 200
        assert f'<meta name="csrf-token" content="{csrf_token(studio.token)}">' in page.text
        assert studio.token not in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/studio.js").status_code == 200


def test_posts_with_the_cookie_need_the_csrf_header_and_our_origin(world):
    studio = world.studio
    with studio.client() as client:
        no_header = client.post("/api/endpoints/shop/keys/reveal")
        assert no_header.status_code == 403
        assert no_header.json() == {"error": "missing or wrong x-csrf-token header; reload the studio page"}
        wrong = client.post("/api/endpoints/shop/keys/reveal", headers={"x-csrf-token": "0" * 64})
        assert wrong.status_code == 403
        other_site = _post(
            client, studio.token, "/api/endpoints/shop/keys/reveal", headers={"origin": "http://evil.example"}
        )
        assert other_site.status_code == 403
        assert other_site.json() == {
            "error": "origin 'http://evil.example' is not this studio's; cross-site requests are refused"
        }
        same_site = _post(client, studio.token, "/api/endpoints/shop/keys/reveal", headers={"origin": studio.base})
        assert same_site.status_code == 200
    # A script with the token in the Authorization header is no browser: no cookie, no CSRF header needed.
    bearer = httpx.post(
        f"{studio.base}/api/endpoints/shop/keys/reveal", headers={"authorization": f"Bearer {studio.token}"}, timeout=10
    )
    assert bearer.status_code == 200


def test_list_and_show_describe_the_endpoint_without_its_keys(world):
    keys = keys_of(world.state)
    with world.studio.client() as client:
        listed = client.get("/api/endpoints")
        shown = client.get("/api/endpoints/shop")
        missing = client.get("/api/endpoints/nope")
    assert listed.status_code == 200 and shown.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    for text in (listed.text, shown.text):
        assert keys["primary"] not in text and keys["secondary"] not in text
    items = {e["name"]: e for e in listed.json()["endpoints"]}
    port = world.endpoint["router"]["port"]
    shop = items["shop"]
    assert (shop["kind"], shop["state"], shop["auth_mode"], shop["deployment_count"]) == ("online", "Running", "key", 2)
    assert shop["scoring_uri"] == f"http://127.0.0.1:{port}/score"
    batch = items["files-batch"]
    assert (batch["kind"], batch["auth_mode"], batch["deployment_count"], batch["default_deployment"]) == (
        "batch",
        "aad_token",
        1,
        "nightly",
    )
    detail = shown.json()
    rows = {d["name"]: d for d in detail["deployments"]}
    assert rows["blue"] == {
        "name": "blue",
        "state": "Ready",
        "instance_count": 2,
        "processes": 1,
        "instance_type": "Standard_DS3_v2",
        "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest",
        "model": "../model",
        "port": world.endpoint["deployments"]["blue"]["port"],
        "traffic": 90,
        "mirror": 0,
    }
    assert (detail["traffic"], detail["mirror_traffic"]) == ({"blue": 90, "green": 10}, {})
    assert missing.status_code == 404
    assert missing.json() == {"error": f"no local endpoint named 'nope' in {world.state}"}


def test_reveal_and_regenerate_keys(world):
    studio = world.studio
    before = keys_of(world.state)
    with studio.client() as client:
        revealed = _post(client, studio.token, "/api/endpoints/shop/keys/reveal").json()
        assert revealed == {"primaryKey": before["primary"], "secondaryKey": before["secondary"]}
        bad = _post(client, studio.token, "/api/endpoints/shop/keys/regenerate", json={"key": "tertiary"})
        assert bad.status_code == 400
        assert bad.json() == {"error": "key: got 'tertiary'; regenerate primary or secondary"}
        done = _post(client, studio.token, "/api/endpoints/shop/keys/regenerate", json={"key": "secondary"})
        assert done.json() == {"regenerated": "secondary"}
    after = keys_of(world.state)
    assert after["primary"] == before["primary"] and after["secondary"] != before["secondary"]
    score = world.endpoint["scoring_uri"]
    for key, status in ((before["secondary"], 401), (after["secondary"], 200)):
        answer = httpx.post(score, json={"x": 1}, headers={"authorization": f"Bearer {key}"})
        assert answer.status_code == status


def test_invoke_pinned_and_by_weights(world):
    studio = world.studio
    with studio.client() as client:
        pinned = _post(
            client,
            studio.token,
            "/api/endpoints/shop/invoke?deployment=green",
            content=b'{"a": 1}',
            headers={"content-type": "application/json"},
        )
        assert pinned.status_code == 200
        result = pinned.json()
        assert result["status"] == 200
        assert json.loads(result["body"]) == {"deployment": "green", "body": {"a": 1}}
        assert result["headers"]["azureml-model-deployment"] == "green"
        assert result["latency_ms"] > 0
        swagger = client.get("/api/endpoints/shop/swagger.json")
        assert swagger.status_code == 200
        assert swagger.json()["swagger"] == "2.0" and swagger.json()["info"]["title"] == "shop"
        unknown = _post(client, studio.token, "/api/endpoints/shop/invoke?deployment=purple", content=b"{}")
        assert unknown.json()["status"] == 404
        assert "purple" in json.loads(unknown.json()["body"])["error"]


def test_traffic_edit_is_validated_written_and_applied(world, restore_endpoint_file):
    studio = world.studio
    endpoint_file = world.project / "endpoint.yml"
    before = endpoint_file.read_text()
    with studio.client() as client:
        bad = _post(client, studio.token, "/api/endpoints/shop/traffic", json={"traffic": {"blue": 50, "green": 20}})
        assert bad.status_code == 400
        assert bad.json() == {"error": f"{endpoint_file}:4: traffic: got 50+20=70; live traffic must sum to 0 or 100"}
        assert endpoint_file.read_text() == before
        assert sorted(p.name for p in world.project.iterdir()) == ["code", "deployments", "endpoint.yml", "model"]
        # Local changes apply at once: a confirm (the cluster mode's second step) has nothing to confirm.
        confirm = _post(
            client,
            studio.token,
            "/api/endpoints/shop/traffic",
            json={"traffic": {"blue": 0, "green": 100}, "confirm": "0123456789abcdef01234567"},
        )
        assert (confirm.status_code, confirm.json()) == (
            400,
            {"error": "confirm: the local studio applies changes at once; there is no preview to confirm"},
        )
        assert endpoint_file.read_text() == before
        not_ints = _post(client, studio.token, "/api/endpoints/shop/traffic", json={"traffic": {"blue": "all"}})
        assert not_ints.json() == {
            "error": "traffic: got {'blue': 'all'}; send an object of deployment name -> integer percent"
        }
        done = _post(
            client,
            studio.token,
            "/api/endpoints/shop/traffic",
            json={"traffic": {"blue": 0, "green": 100}, "mirror_traffic": {"blue": 20}},
        )
        assert done.status_code == 200, done.text
        result = done.json()
        assert result["applied"] is True
        assert (result["traffic"], result["mirror_traffic"]) == ({"blue": 0, "green": 100}, {"blue": 20})
    text = endpoint_file.read_text()
    assert text.startswith("# The shop endpoint of the studio tests: blue is live, green the challenger.\n")
    assert text.endswith(
        "traffic:\n  blue: 0    # current model\n  green: 100\nmirror_traffic:\n  blue: 20\n"
    )  # comment column kept
    key = keys_of(world.state)["primary"]
    answered = {
        httpx.post(world.endpoint["scoring_uri"], json={"i": i}, headers={"authorization": f"Bearer {key}"}).headers[
            "azureml-model-deployment"
        ]
        for i in range(20)
    }
    assert answered == {"green"}


def test_logs_tail_and_follow(world):
    studio = world.studio
    key = keys_of(world.state)["primary"]
    with studio.client() as client:
        assert client.get("/api/endpoints/shop/logs").json() == {"logs": ["blue", "green", "router"]}
        last = (world.state / "shop" / "logs" / "blue.log").read_text().splitlines()[-1]
        tail = client.get("/api/endpoints/shop/logs/blue?tail=50").json()
        assert last in tail["text"]  # later lines (the studio's /metrics scrapes) may follow it
        assert 0 < len(tail["text"].splitlines()) <= 50
        missing = client.get("/api/endpoints/shop/logs/purple")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no log for 'purple' (logs: blue, green, router)"}
        with client.stream("GET", f"/api/endpoints/shop/logs/blue/follow?offset={tail['offset']}") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == ": following"
            marker = {"follow-me": 42}
            httpx.post(
                world.endpoint["scoring_uri"],
                json=marker,
                headers={"authorization": f"Bearer {key}", "azureml-model-deployment": "blue"},
            )
            for line in lines:
                if line.startswith("data: ") and "follow-me" in json.loads(line[6:])["text"]:
                    break
            event = json.loads(line[6:])
            assert "scored {'follow-me': 42} on blue" in event["text"]
            assert event["offset"] > tail["offset"]


def test_metrics_are_sampled_from_the_deployments(world):
    key = keys_of(world.state)["primary"]
    with world.studio.client() as client:

        def has_traffic():
            for i in range(5):
                httpx.post(
                    world.endpoint["scoring_uri"],
                    json={"i": i},
                    headers={"authorization": f"Bearer {key}", "azureml-model-deployment": "blue"},
                )
            points = client.get("/api/endpoints/shop/metrics").json()["deployments"].get("blue", [])
            return [p for p in points if p["rps"] > 0 and p["p50_ms"] is not None]

        points = wait_for(has_traffic, timeout=60, what="a metrics point with traffic", poll_s=0.5)
        answer = client.get("/api/endpoints/shop/metrics").json()
        assert (answer["source"], answer["interval_s"]) == ("studio", 5.0)
        assert points[-1]["by_class"]["2xx"] > 0
        assert points[-1]["p99_ms"] >= points[-1]["p50_ms"]
        listed = {e["name"]: e for e in client.get("/api/endpoints").json()["endpoints"]}
        assert listed["shop"]["requests_per_second"] is not None


def test_batch_job_runs_to_completed_with_failures_and_output(world, tmp_path: Path):
    studio = world.studio
    inputs = make_inputs(tmp_path / "in", 8, bad={5})
    with studio.client() as client:
        bad = _post(client, studio.token, "/api/batch/files-batch/jobs", json={"input": str(inputs), "deployment": "x"})
        assert bad.status_code == 404
        assert bad.json() == {"error": "deployment: got 'x'; endpoint 'files-batch' has nightly"}
        submitted = _post(
            client, studio.token, "/api/batch/files-batch/jobs", json={"input": str(inputs), "job_id": "api-job-1"}
        )
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["id"] == "api-job-1"

        def finished():
            job = client.get("/api/batch/files-batch/jobs/api-job-1").json()
            return job if job["status"] in ("Completed", "Failed", "Canceled") else None

        job = wait_for(finished, timeout=120, what="the batch job to finish")
        assert job["status"] == "Completed"
        assert job["counts"]["items"] == {"succeeded": 6, "failed": 2}
        assert job["counts"]["failures"] == [
            {"mini_batch": 2, "failed_items": 2, "attempts": 1, "reason": "ValueError: cannot read 00005-bad.txt"}
        ]
        listed = client.get("/api/batch/files-batch").json()
        assert [j["id"] for j in listed["jobs"]] == ["api-job-1"]
        output = client.get("/api/batch/files-batch/jobs/api-job-1/output")
        assert output.status_code == 200
        assert output.headers["content-disposition"] == 'attachment; filename="api-job-1-predictions.csv"'
        assert sorted(output.text.splitlines()) == [f"{i:05d}-f.txt,{i}" for i in (0, 1, 2, 3, 6, 7)]
        logs = client.get("/api/batch/files-batch/jobs/api-job-1/logs").json()["logs"]
        assert list(logs) == ["instance-0"]
        lines = [json.loads(line) for line in logs["instance-0"].splitlines()]  # one JSON log line format
        assert {
            "level": "error",
            "instance": 0,
            "message": "mini-batch 2 failed after 1 attempts: ValueError: cannot read 00005-bad.txt",
        }.items() <= next(line for line in lines if line["level"] == "error").items()
        last = lines[-1]
        assert (last["level"], last["message"]) == (
            "info",
            "summary: Completed (" + str(Path(job["output"]) / "predictions.summary.json") + ")",
        )
        cancel = _post(client, studio.token, "/api/batch/files-batch/jobs/api-job-1/cancel")
        assert cancel.status_code == 409
        assert cancel.json() == {
            "error": "batch job 'api-job-1' is Completed; only Queued or Running jobs can be canceled"
        }
        traversal = client.get("/api/batch/files-batch/jobs/..%2Fx")
        assert traversal.status_code == 404


# ------------------------------------------------------------------------------------------- metrics math
SCRAPE = """\
# TYPE endpoints_requests counter
endpoints_requests_total{route="/score",status="200"} 10.0
endpoints_requests_total{route="/score",status="404"} 2.0
endpoints_requests_total{route="/ready",status="200"} 50.0
# TYPE endpoints_request_duration_seconds histogram
endpoints_request_duration_seconds_bucket{le="0.01",route="/score"} 4.0
endpoints_request_duration_seconds_bucket{le="0.1",route="/score"} 10.0
endpoints_request_duration_seconds_bucket{le="+Inf",route="/score"} 12.0
endpoints_request_duration_seconds_count{route="/score"} 12.0
endpoints_request_duration_seconds_sum{route="/score"} 0.5
endpoints_request_duration_seconds_bucket{le="0.01",route="/ready"} 50.0
endpoints_request_duration_seconds_bucket{le="+Inf",route="/ready"} 50.0
"""


def test_scrape_parsing_and_quantiles():
    scrape = parse_scrape(SCRAPE, at=100.0)
    assert scrape.by_class == {"2xx": 10.0, "4xx": 2.0}
    assert scrape.buckets == [(0.01, 4.0), (0.1, 10.0), (float("inf"), 12.0)]
    assert quantile(0.5, scrape.buckets) == pytest.approx(0.01 + 0.09 * (6 - 4) / 6)
    assert quantile(0.99, scrape.buckets) == 0.1  # in the +Inf bucket: the largest finite bound
    assert quantile(0.5, []) is None
    later = Scrape(
        at=110.0,
        by_class={"2xx": 30.0, "4xx": 2.0, "5xx": 1.0},
        buckets=[(0.01, 24.0), (0.1, 30.0), (float("inf"), 33.0)],
    )
    point = point_between(scrape, later)
    assert point == {
        "rps": 2.1,
        "by_class": {"2xx": 2.0, "4xx": 0.0, "5xx": 0.1},
        "p50_ms": pytest.approx(5.25),
        "p99_ms": 100.0,
    }
    restarted = Scrape(at=120.0, by_class={"2xx": 5.0}, buckets=[(0.01, 5.0), (0.1, 5.0), (float("inf"), 5.0)])
    assert point_between(later, restarted)["by_class"] == {"2xx": 0.5}


def test_consume_tab_python_snippet_runs_with_the_sdk(world):
    """The Consume tab's Python snippet, as the page renders it, runs against the real endpoint with the SDK."""
    import re
    import subprocess
    import sys

    from endpoints.studio.app import STATIC

    source = (STATIC / "studio.js").read_text()
    match = re.search(r"const python = `(.*?)`;", source)
    assert match is not None, "studio.js has no Python snippet"
    snippet = match.group(1).replace("${ep.scoring_uri}", world.endpoint["scoring_uri"]).replace("\\n", "\n")
    env = {**world.env, "ENDPOINT_KEY": keys_of(world.state)["primary"]}
    ran = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    status, deployment, body = ran.stdout.strip().split(" ", 2)
    assert (status, body) == ("200", f"{{'deployment': '{deployment}', 'body': {{'data': [1, 2, 3]}}}}")
    assert deployment in ("blue", "green")
