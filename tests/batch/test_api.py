"""The job API: request validation in process, then the real server over sockets with the local launcher."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from batch_helpers import FIXTURES, PROJECT, expected_rows, make_inputs

from endpoints.local.batch_api import local_api
from serving.batch.api import build_app


class InProcess:
    """Requests through ``httpx.ASGITransport`` (no lifespan: nothing starts in the background)."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def get(self, path: str, **kw) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.request("POST", path, **kw)


@pytest.fixture
def client(tmp_path):
    return InProcess(build_app(local_api(str(PROJECT), str(tmp_path / "state"))))


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        pytest.param(
            b"{",
            400,
            "request body: not valid JSON: Expecting property name enclosed in double quotes at position 1",
            id="bad-json",
        ),
        pytest.param(b"{}", 400, "request body: input: got {}; Field required", id="no-input"),
        pytest.param(
            b'{"input": "/x", "extra": 1}',
            400,
            "request body: extra: got 1; Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            b'{"input": "/x", "deployment": "bob"}',
            404,
            "deployment: got 'bob'; endpoint 'files-batch' has alice",
            id="unknown-deployment",
        ),
        pytest.param(
            b'{"input": "/x", "settings": {"mini_batch_size": 0}}',
            400,
            "settings: mini_batch_size: got 0; Input should be greater than or equal to 1",
            id="bad-override",
        ),
        pytest.param(
            b'{"input": "/x", "settings": {"entry_script": "/evil.py"}}',
            400,
            "settings: entry_script: got '/evil.py'; a job may set error_threshold, instance_count, "
            "logging_level, max_concurrency_per_instance, max_retries, mini_batch_size, output_action, "
            "output_file_name, overwrite, resources.instance_count, retry_settings.max_retries, "
            "retry_settings.timeout, timeout or environment_variables.<NAME>",
            id="not-overridable",
        ),
        pytest.param(
            b'{"input": "/x", "job_id": "Bad_Id"}',
            400,
            "request body: job_id: got 'Bad_Id'; String should match pattern '^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$'",
            id="bad-job-id",
        ),
    ],
)
def test_bad_submissions(client, body, status, error):
    response = client.post("/jobs", content=body)
    assert response.status_code == status
    assert response.json() == {"error": error}


def test_unknown_job_is_404(client):
    assert client.get("/jobs/nope").status_code == 404
    assert client.get("/jobs/nope").json() == {"error": "no batch job 'nope'"}
    assert client.post("/jobs/nope/cancel").json() == {"error": "no batch job 'nope'"}


# ------------------------------------------------------------------------------------------- real server


def test_job_lifecycle_over_http_with_key_auth(api_process, tmp_path):
    make_inputs(tmp_path / "in", 40)
    unauthenticated = httpx.post(f"{api_process.url}/jobs", json={"input": str(tmp_path / "in")}, timeout=10)
    assert unauthenticated.status_code == 401
    response = api_process.call("POST", "/jobs", json={"input": str(tmp_path / "in"), "job_id": "job-a"})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/jobs/job-a"
    assert response.json()["status"] in ("Queued", "Running")
    job = api_process.wait("job-a", {"Completed", "Failed"})
    assert job["status"] == "Completed", job
    assert job["deployment"] == "alice"
    assert job["counts"]["mini_batches"] == {"total": 8, "done": 8, "failed": 0}
    assert job["counts"]["rows"] == 40
    assert job["progress"]["done"] == 8
    assert job["settings"]["instance_count"] == 2
    output = Path(job["output"]) / "predictions.csv"
    assert sorted(output.read_text().splitlines()) == expected_rows(40)
    listed = api_process.call("GET", "/jobs").json()
    assert [j["id"] for j in listed["jobs"]] == ["job-a"]
    # The same submission again is a re-run: a completed job is returned as it is (a failed one would resume).
    again = api_process.call("POST", "/jobs", json={"input": str(tmp_path / "in"), "job_id": "job-a"})
    assert again.status_code == 202, again.text
    assert (again.json()["status"], again.json()["counts"]["rows"]) == ("Completed", 40)
    other = api_process.call("POST", "/jobs", json={"input": str(tmp_path), "job_id": "job-a"})
    assert other.status_code == 409
    assert other.json() == {
        "error": "batch job 'job-a' already exists with another input and settings; re-run it with the same "
        "arguments to resume it, or choose another job id"
    }
    done = api_process.call("POST", "/jobs/job-a/cancel")
    assert done.status_code == 409
    assert done.json() == {"error": "batch job 'job-a' is Completed; only Queued or Running jobs can be canceled"}


def test_cancel_stops_runners_and_keeps_finished_rows(api_process, tmp_path):
    make_inputs(tmp_path / "in", 200)
    body = {
        "input": str(tmp_path / "in"),
        "job_id": "job-slow",
        "settings": {"instance_count": 1, "max_concurrency_per_instance": 1, "environment_variables.SLEEP": "0.2"},
    }
    assert api_process.call("POST", "/jobs", json=body).status_code == 202
    job = api_process.wait("job-slow", {"Running"})
    deadline = time.monotonic() + 30
    while job["progress"].get("done", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api_process.call("GET", "/jobs/job-slow").json()
    response = api_process.call("POST", "/jobs/job-slow/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "Canceled"
    time.sleep(1.5)
    job = api_process.call("GET", "/jobs/job-slow").json()
    assert job["status"] == "Canceled"
    done = job["counts"]["mini_batches"]["done"]
    assert 2 <= done < 40
    output = Path(job["output"]) / "predictions.csv"
    assert output.read_text().splitlines() == expected_rows(200)[: done * 5]


def test_jobs_survive_an_api_restart_and_queue_beyond_capacity(api_process, tmp_path):
    make_inputs(tmp_path / "in", 60)
    # 1 s a mini-batch: a job runs for seconds, so none ends before GET /jobs, even on a loaded machine (at 0.1 s a
    # job could complete while the three POSTs were still being answered).
    slow = {"instance_count": 1, "environment_variables.SLEEP": "1"}
    for i in range(3):
        body = {"input": str(tmp_path / "in"), "job_id": f"job-{i}", "settings": slow}
        assert api_process.call("POST", "/jobs", json=body).status_code == 202
    statuses = {j["id"]: j["status"] for j in api_process.call("GET", "/jobs").json()["jobs"]}
    assert sorted(statuses.values()) == ["Queued", "Running", "Running"]  # max_running 2
    api_process.stop()
    api_process.start()
    for i in range(3):
        job = api_process.wait(f"job-{i}", {"Completed", "Failed"}, timeout=90)
        assert job["status"] == "Completed", job
        assert sorted((Path(job["output"]) / "predictions.csv").read_text().splitlines()) == expected_rows(60)


def test_local_api_makes_relative_paths_absolute(tmp_path, monkeypatch):
    from serving.batch.api import JobSubmission

    api = local_api(str(PROJECT), str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    request = api.request_for(JobSubmission(input="data/*.csv", output="out", job_id="rel-1"))
    assert request.input == str(tmp_path / "data" / "*.csv")
    assert request.output == str(tmp_path / "state" / "outputs" / "out")  # outputs stay under the endpoint's root
    api.confine_outputs = False  # the CLI's in-process local mode: the user's own folders
    request = api.request_for(JobSubmission(input="data/*.csv", output="out", job_id="rel-3"))
    assert request.output == str(tmp_path / "out")
    assert request.settings["entry_script"] == str(FIXTURES / "score.py")
    remote = api.request_for(JobSubmission(input="s3://bucket/data/", job_id="rel-2"))
    assert remote.input == "s3://bucket/data/"
    assert remote.output == str(tmp_path / "state" / "outputs" / "rel-2")


def test_outputs_are_confined_to_the_endpoints_root_over_http(api_process, tmp_path):
    """Issue 13 item 8: any caller could write (and, with overwrite, replace) another endpoint's outputs."""
    make_inputs(tmp_path / "in", 10)
    root = api_process.state / "outputs"
    other = tmp_path / "other-endpoint" / "outputs" / "nightly"
    other.mkdir(parents=True)
    (other / "predictions.csv").write_text("theirs\n")
    for output in (str(other), "../../other-endpoint/outputs/nightly", str(root), "s3://bucket/x"):
        response = api_process.call(
            "POST", "/jobs", json={"input": str(tmp_path / "in"), "output": output, "settings": {"overwrite": True}}
        )
        assert response.status_code == 400, response.text
        assert (
            response.json()
            == {
                "error": f"output: got {output!r}; outputs of endpoint 'files-batch' must be folders under {root} (e.g. "
                f"{root}/nightly-2024-06-01)"
            }
            if "://" not in output
            else {"error": f"output: got {output!r}; outputs are folders on the batch volume under {root}"}
        )
    (root / "escape").mkdir(parents=True)
    (root / "escape" / "link").symlink_to(other)
    response = api_process.call("POST", "/jobs", json={"input": str(tmp_path / "in"), "output": "escape/link"})
    assert response.status_code == 400, response.text
    assert (other / "predictions.csv").read_text() == "theirs\n"
    assert api_process.call("GET", "/jobs").json() == {"jobs": []}  # nothing was started
    ok = api_process.call("POST", "/jobs", json={"input": str(tmp_path / "in"), "output": "nightly", "job_id": "own"})
    assert ok.status_code == 202, ok.text
    assert ok.json()["output"] == str(root / "nightly")
    assert api_process.wait("own", {"Completed", "Failed"})["status"] == "Completed"
