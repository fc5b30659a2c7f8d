"""``endpoints batch``: local folder mode in process, URL mode against the real job API."""

from __future__ import annotations

import json
import re
from pathlib import Path

from batch_helpers import KEY, PROJECT, expected_rows, make_inputs
from typer.testing import CliRunner

from endpoints.cli.main import build_app

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(build_app(), ["batch", *args])


def flat(text: str) -> str:
    """Typer's error box wraps lines: compare words only."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_invoke_local_folder_and_wait(tmp_path):
    make_inputs(tmp_path / "in", 30)
    state = str(tmp_path / "state")
    result = cli(
        "invoke",
        str(PROJECT),
        "--input",
        str(tmp_path / "in"),
        "--wait",
        "--json",
        "--state-dir",
        state,
        "--set",
        "mini_batch_size=10",
        "--job-id",
        "cli-1",
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "Completed"
    assert job["settings"]["mini_batch_size"] == 10
    assert job["counts"]["mini_batches"] == {"total": 3, "done": 3, "failed": 0}
    assert sorted((Path(job["output"]) / "predictions.csv").read_text().splitlines()) == expected_rows(30)
    listed = cli("list", str(PROJECT), "--state-dir", state, "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == ["cli-1"]
    status = cli("status", str(PROJECT), "cli-1", "--state-dir", state)
    assert status.stdout.startswith("cli-1  Completed  alice  3/3 mini-batches, 30 rows, ")
    canceled = cli("cancel", str(PROJECT), "cli-1", "--state-dir", state)
    assert canceled.exit_code == 1
    assert "batch job 'cli-1' is Completed; only Queued or Running jobs can be canceled" in flat(canceled.output)


def test_bad_endpoint_and_bad_set(tmp_path):
    result = cli("list", str(tmp_path))
    assert result.exit_code == 2
    assert "give a job API URL (http[s]://...) or a batch endpoint folder holding endpoint.yml" in flat(result.output)
    result = cli("invoke", str(PROJECT), "--input", "x", "--set", "nonsense", "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "got 'nonsense'; write key=value, e.g. mini_batch_size=20" in flat(result.output)


def test_invoke_url_and_follow(api_process, tmp_path):
    make_inputs(tmp_path / "in", 20)
    result = cli(
        "invoke",
        api_process.url,
        "--input",
        str(tmp_path / "in"),
        "--key",
        KEY,
        "--job-id",
        "url-1",
        "--wait",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "Completed"
    result = cli("status", api_process.url, "url-1", "--key", KEY, "--json")
    assert json.loads(result.stdout)["counts"]["rows"] == 20
    result = cli("list", api_process.url, "--key", "wrong")
    assert result.exit_code == 1
    assert "GET /jobs: HTTP 401" in result.output
