"""What a job tells its user when it goes wrong: the real CLI, real runner processes (issue 13 items 7, 10-12).

* a job pointed at another job's output folder fails, naming the folder (it used to report Completed with the
  other job's rows);
* the reason of a failure is in the CLI output and in ``summary.json``; failed items are listed; exit 1 when items
  failed past the threshold, or when every item failed;
* a job whose runners were killed with -9 while ``invoke --wait`` followed it is resumed by the same invoke or by
  ``batch resume``; ``batch status`` only reads (it used to restart dead jobs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from batch_helpers import PROJECT, REPO, expected_rows, make_inputs
from typer.testing import CliRunner

from endpoints.cli.main import build_app

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(build_app(), ["batch", *args])


def _outputs(state: Path) -> Path:
    return state / PROJECT.resolve().name / "outputs"


def _job_dir(state: Path, job_id: str) -> Path:
    return state / PROJECT.resolve().name / "jobs" / job_id


def test_job_pointed_at_another_jobs_output_fails_naming_the_folder(tmp_path):
    make_inputs(tmp_path / "in", 10)
    make_inputs(tmp_path / "in2", 4, prefix="g")
    state, out = tmp_path / "state", tmp_path / "shared-out"
    first = cli(
        "invoke",
        str(PROJECT),
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(out),
        "--job-id",
        "job-a",
        "--wait",
        "--json",
        "--state-dir",
        str(state),
    )
    assert first.exit_code == 0, first.output
    summary_a = (out / "predictions.summary.json").read_text()
    second = cli(
        "invoke",
        str(PROJECT),
        "--input",
        str(tmp_path / "in2"),
        "--output",
        str(out),
        "--job-id",
        "job-b",
        "--wait",
        "--json",
        "--state-dir",
        str(state),
    )
    assert second.exit_code == 1, second.output
    job = json.loads(second.stdout)
    assert (job["status"], job["error"]) == (
        "Failed",
        f"{out}/predictions.csv: output belongs to job 'job-a', not 'job-b'; choose another output location or set "
        "overwrite: true",
    )
    assert job["counts"]["rows"] == 0 and job["counts"]["mini_batches"]["done"] == 0  # job-a's rows are not job-b's
    assert sorted((out / "predictions.csv").read_text().splitlines()) == expected_rows(10)
    assert (out / "predictions.summary.json").read_text() == summary_a  # job-a's summary is left alone


def test_missing_input_names_the_reason_in_the_cli_and_the_summary(tmp_path):
    state, missing = tmp_path / "state", tmp_path / "nothing"
    result = cli(
        "invoke", str(PROJECT), "--input", str(missing), "--job-id", "no-input", "--wait", "--state-dir", str(state)
    )
    assert result.exit_code == 1, result.output
    reason = f"input: got {str(missing)!r}; no such file or folder"
    assert (
        result.stdout.splitlines()[0] == f"no-input  Failed     alice  0/0 mini-batches, 0 rows, 0.0 rows/s - {reason}"
    )
    summary = json.loads((_outputs(state) / "no-input" / "predictions.summary.json").read_text())
    assert (summary["job_id"], summary["status"], summary["error"]) == ("no-input", "Failed", reason)


def test_every_item_failing_is_listed_and_exits_1(tmp_path):
    make_inputs(tmp_path / "in", 10, bad=set(range(10)))
    state = tmp_path / "state"
    result = cli(
        "invoke",
        str(PROJECT),
        "--input",
        str(tmp_path / "in"),
        "--job-id",
        "all-bad",
        "--wait",
        "--set",
        "environment_variables.BAD_PREFIX=bad",
        "--state-dir",
        str(state),
    )
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "all-bad  Completed  alice  2/2 mini-batches, 0 rows, 0.0 rows/s, 10 failed items",
        "  failed: mini-batch 0: 5 items after 1 attempts: run() returned 0 items for 5 files",
        "  failed: mini-batch 1: 5 items after 1 attempts: run() returned 0 items for 5 files",
    ]
    assert "every item failed; nothing was scored" in result.stderr


def test_items_failing_past_the_threshold_fail_the_job_with_the_reason(tmp_path):
    make_inputs(tmp_path / "in", 10, bad=set(range(10)))
    state = tmp_path / "state"
    result = cli(
        "invoke",
        str(PROJECT),
        "--input",
        str(tmp_path / "in"),
        "--job-id",
        "over",
        "--wait",
        "--json",
        "--set",
        "environment_variables.BAD_PREFIX=bad",
        "--set",
        "error_threshold=3",
        "--set",
        "instance_count=1",
        "--set",
        "max_concurrency_per_instance=1",
        "--state-dir",
        str(state),
    )
    assert result.exit_code == 1, result.output
    job = json.loads(result.stdout)
    assert (job["status"], job["error"]) == ("Failed", "5 failed items exceed error_threshold 3")
    summary = json.loads((_outputs(state) / "over" / "predictions.summary.json").read_text())
    assert (summary["status"], summary["error"], summary["items"]) == (
        "Failed",
        "5 failed items exceed error_threshold 3",
        {"succeeded": 0, "failed": 5},
    )


def _runner_pids(job_dir: Path) -> list[int]:
    procs = job_dir / "procs.json"
    return [p["pid"] for p in json.loads(procs.read_text())["processes"]] if procs.exists() else []


def test_kill_9_during_invoke_wait_then_status_reads_and_the_same_invoke_resumes(tmp_path):
    make_inputs(tmp_path / "in", 40)
    state = tmp_path / "state"
    invoke = [
        sys.executable,
        "-m",
        "endpoints.cli.main",
        "batch",
        "invoke",
        str(PROJECT),
        "--input",
        str(tmp_path / "in"),
        "--job-id",
        "k9",
        "--wait",
        "--state-dir",
        str(state),
        "--set",
        "mini_batch_size=2",
        "--set",
        "environment_variables.SLEEP=0.3",
    ]
    follower = subprocess.Popen(invoke, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_dir = _job_dir(state, "k9")
    journal = _outputs(state) / "k9" / ".predictions.csv.batch" / "journal.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not (journal.exists() and journal.read_bytes().count(b"\n") >= 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = _runner_pids(job_dir)
        assert len(pids) == 2, follower.stderr.read() if follower.poll() is not None else pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        out, _ = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 1, out
    assert out.startswith("k9  Failed ")
    assert "runner exited before the job finished (exit codes [-9, -9])" in out

    # status reads: it neither restarts the runners nor changes the verdict.
    procs_before = (job_dir / "procs.json").read_bytes()
    for _ in range(2):
        status = cli("status", str(PROJECT), "k9", "--state-dir", str(state), "--json")
        assert status.exit_code == 0, status.output
        assert json.loads(status.stdout)["status"] == "Failed"
    assert (job_dir / "procs.json").read_bytes() == procs_before

    # A different submission under the same id is refused; the same one resumes.
    other = cli("invoke", str(PROJECT), "--input", str(tmp_path), "--job-id", "k9", "--state-dir", str(state))
    assert other.exit_code == 1
    assert "batch job 'k9' already exists with another input and settings" in " ".join(other.output.split())
    again = subprocess.run(invoke, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("k9  Completed  alice  20/20 mini-batches, 40 rows"), again.stdout
    assert sorted((_outputs(state) / "k9" / "predictions.csv").read_text().splitlines()) == expected_rows(40)
    status = cli("status", str(PROJECT), "k9", "--state-dir", str(state), "--json")
    assert json.loads(status.stdout)["status"] == "Completed"


def test_batch_resume_restarts_a_canceled_job_explicitly(tmp_path):
    make_inputs(tmp_path / "in", 40)
    state = tmp_path / "state"
    # Every mini-batch after the first is held while the gate exists: the job is still running when it is canceled,
    # however slow the machine.
    gate = tmp_path / "gate"
    gate.touch()
    # A real CLI process: it returns at once and leaves the runners running, as a user's shell would.
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "endpoints.cli.main",
            "batch",
            "invoke",
            str(PROJECT),
            "--input",
            str(tmp_path / "in"),
            "--job-id",
            "res",
            "--set",
            "mini_batch_size=2",
            "--set",
            f"environment_variables.HOLD_WHILE_EXISTS={gate}",
            "--set",
            "environment_variables.HOLD_AFTER_CALLS=1",
            "--state-dir",
            str(state),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    journal = _outputs(state) / "res" / ".predictions.csv.batch" / "journal.jsonl"
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    canceled = cli("cancel", str(PROJECT), "res", "--state-dir", str(state), "--json")
    assert canceled.exit_code == 0, canceled.output
    assert json.loads(canceled.stdout)["status"] == "Canceled"
    pids = _runner_pids(_job_dir(state, "res"))
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # the runners flush and stop
    gate.unlink()
    refused = cli("resume", str(PROJECT), "nope", "--state-dir", str(state))
    assert refused.exit_code == 1 and "no batch job 'nope'" in refused.output
    resumed = cli("resume", str(PROJECT), "res", "--wait", "--json", "--state-dir", str(state))
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "Completed"
    assert sorted((_outputs(state) / "res" / "predictions.csv").read_text().splitlines()) == expected_rows(40)
    done = cli("resume", str(PROJECT), "res", "--state-dir", str(state))
    assert done.exit_code == 1
    assert "batch job 'res' is Completed; only Failed, Canceled or Queued jobs can be resumed" in " ".join(
        done.output.split()
    )
