"""BatchEndpointClient and BatchJob (endpoints.sdk) against the real job API process and in folder mode; the job
API's output and log routes; ``endpoints batch download|logs`` and the exported ``jobsUri`` taken as it is."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from batch_helpers import KEY, PROJECT, expected_rows, make_inputs
from typer.testing import CliRunner

from endpoints.cli.main import build_app
from endpoints.sdk import BatchEndpointClient, EndpointError
from serving.batch.job_files import OutputNameError, list_outputs, output_file

runner = CliRunner()


def _summary_name() -> str:
    return "predictions.summary.json"


def test_sdk_over_http_with_the_exported_jobs_uri(api_process, tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 20)
    jobs_uri = f"{api_process.url}/jobs"  # as `pulumi stack output <endpoint>.jobsUri` prints it
    with BatchEndpointClient(jobs_uri, key=KEY) as client:
        job = client.invoke(str(tmp_path / "in"), job_id="sdk-1", mini_batch_size=5)
        assert job.id == "sdk-1" and job.info["settings"]["mini_batch_size"] == 5
        final = job.wait(progress=False, poll_s=0.2, timeout_s=120)
        assert final["status"] == "Completed" and job.status() == "Completed"
        assert [f["name"] for f in job.outputs()] == ["predictions.csv", _summary_name()]
        written = job.download(tmp_path / "dl")
        assert written == [tmp_path / "dl" / "predictions.csv", tmp_path / "dl" / _summary_name()]
        assert sorted((tmp_path / "dl" / "predictions.csv").read_text().splitlines()) == expected_rows(20)
        assert json.loads((tmp_path / "dl" / _summary_name()).read_text())["status"] == "Completed"
        logs = job.logs(tail=5)
        assert list(logs) == ["0", "1"]  # the fixture deployment runs two instances
        assert all(0 < len(text.splitlines()) <= 5 for text in logs.values())
        assert [j.id for j in client.jobs()] == ["sdk-1"]
        with pytest.raises(EndpointError) as e:
            client.job("nope")
        assert (str(e.value), e.value.status) == ("GET /jobs/nope: HTTP 404: no batch job 'nope'", 404)
        with pytest.raises(EndpointError) as e:
            job.resume()  # POST /jobs/{id}/resume: a completed job is not run again
        assert (str(e.value), e.value.status) == (
            "POST /jobs/sdk-1/resume: HTTP 409: batch job 'sdk-1' is Completed; only Failed, Canceled or Queued jobs "
            "can be resumed",
            409,
        )
    with BatchEndpointClient(api_process.url, key="wrong") as client, pytest.raises(EndpointError) as e:
        client.jobs()
    assert e.value.status == 401


def test_job_api_file_routes_refuse_escapes_and_bad_tail(api_process, tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 3)
    with BatchEndpointClient(api_process.url, key=KEY) as client:
        client.invoke(str(tmp_path / "in"), job_id="esc-1").wait(progress=False, poll_s=0.2, timeout_s=120)
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=api_process.url, headers=headers, timeout=10) as http:
        hidden = http.get("/jobs/esc-1/outputs/.predictions.csv.batch/journal")
        assert (hidden.status_code, hidden.json()) == (
            400,
            {"error": "file: got '.predictions.csv.batch/journal'; name a file listed by GET /jobs/<id>/outputs"},
        )
        missing = http.get("/jobs/esc-1/outputs/nothing.csv")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": "batch job 'esc-1' has no output file 'nothing.csv'"},
        )
        assert http.get("/jobs/nope/outputs").status_code == 404
        assert http.get("/jobs/nope/logs").json() == {"error": "no batch job 'nope'"}
        bad_tail = http.get("/jobs/esc-1/logs", params={"tail": "0"})
        assert (bad_tail.status_code, bad_tail.json()) == (
            400,
            {"error": "tail: got '0'; a number of lines from 1 to 10000"},
        )
        assert http.get("/jobs/esc-1/outputs", headers={"authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("../secret", "file: got '../secret'; name a file listed by GET /jobs/<id>/outputs", id="dotdot"),
        pytest.param("/etc/passwd", "file: got '/etc/passwd'; name a file listed by GET /jobs/<id>/outputs", id="abs"),
        pytest.param("a/../../b", "file: got 'a/../../b'; name a file listed by GET /jobs/<id>/outputs", id="inner"),
        pytest.param("link.csv", "file: got 'link.csv'; it leads outside the job's output folder", id="symlink"),
    ],
)
def test_output_file_stays_in_the_output_folder(tmp_path: Path, name: str, message: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "secret").write_text("s")
    (out / "link.csv").symlink_to(tmp_path / "secret")
    with pytest.raises(OutputNameError) as e:
        output_file(out, name)
    assert str(e.value) == message


def test_list_outputs_skips_hidden_and_links(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / ".state").mkdir()
    (out / ".state" / "journal").write_text("j")
    (out / "a.csv").write_text("12")
    (out / "sub" / "b.csv").write_text("123")
    (out / "link").symlink_to(out / "a.csv")
    assert list_outputs(out) == [{"name": "a.csv", "size": 2}, {"name": "sub/b.csv", "size": 3}]
    assert list_outputs(tmp_path / "not-yet") == []


def test_sdk_folder_mode(tmp_path: Path, capsys) -> None:
    make_inputs(tmp_path / "in", 12)
    client = BatchEndpointClient(PROJECT, state_dir=tmp_path / "state")
    job = client.invoke(str(tmp_path / "in"), job_id="local-1", mini_batch_size=4)
    assert job.wait(progress=True, poll_s=0.2, timeout_s=120)["status"] == "Completed"
    bar = capsys.readouterr().err  # the rich progress bar, rendered once more at the end
    assert "local-1 Completed" in bar and "3/3" in bar
    job.download(tmp_path / "dl")
    assert sorted((tmp_path / "dl" / "predictions.csv").read_text().splitlines()) == expected_rows(12)
    assert list(job.logs()) == ["0", "1"]
    with pytest.raises(EndpointError, match=r"^batch job 'local-1' is Completed; only Queued or Running"):
        job.cancel()
    with pytest.raises(EndpointError, match=r"^batch job 'local-1' is Completed; only Failed, Canceled or Queued"):
        job.resume()
    with pytest.raises(EndpointError, match="give a job API URL"):
        BatchEndpointClient(tmp_path, state_dir=tmp_path / "state")


def test_cli_list_download_logs_with_jobs_uri(api_process, tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 6)
    jobs_uri = f"{api_process.url}/jobs"
    app = build_app()
    done = runner.invoke(
        app,
        [
            "batch",
            "invoke",
            jobs_uri,
            "--input",
            str(tmp_path / "in"),
            "--key",
            KEY,
            "--job-id",
            "cli-dl",
            "--wait",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["batch", "list", jobs_uri, "--key", KEY, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [j["id"] for j in json.loads(listed.stdout)] == ["cli-dl"]
    dl = runner.invoke(app, ["batch", "download", jobs_uri, "cli-dl", str(tmp_path / "dl"), "--key", KEY, "--json"])
    assert dl.exit_code == 0, dl.output
    assert json.loads(dl.stdout) == {
        "job": "cli-dl",
        "files": [str(tmp_path / "dl" / "predictions.csv"), str(tmp_path / "dl" / _summary_name())],
    }
    assert sorted((tmp_path / "dl" / "predictions.csv").read_text().splitlines()) == expected_rows(6)
    logs = runner.invoke(app, ["batch", "logs", jobs_uri, "cli-dl", "--key", KEY, "--tail", "3"])
    assert logs.exit_code == 0, logs.output
    lines = logs.stdout.splitlines()
    assert lines[0] == "==> 0 <==" and lines.count("==> 1 <==") == 1 and len(lines) <= 2 * (1 + 3)
    followed = runner.invoke(app, ["batch", "logs", jobs_uri, "cli-dl", "--key", KEY, "-f", "--tail", "2"])
    assert followed.exit_code == 0  # a finished job: following ends at once, after the last lines
    assert followed.stdout.splitlines()[0] == "==> 0 <==" and len(followed.stdout.splitlines()) <= 2 * (1 + 2)
    missing = runner.invoke(app, ["batch", "logs", jobs_uri, "nope", "--key", KEY, "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout) == {"error": "GET /jobs/nope: HTTP 404: no batch job 'nope'"}
