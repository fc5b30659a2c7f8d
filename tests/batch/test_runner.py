"""Acceptance tests of the batch runner, through real runner processes and real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import pytest
from batch_helpers import FIXTURES, Job, expected_rows


def test_100_files_mini_batch_10_makes_exactly_10_run_calls(job_factory):
    job = job_factory(n_files=100, mini_batch_size=10, max_concurrency_per_instance=2)
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    calls = job.calls()
    assert len(calls) == 10
    assert sorted(int(c[2]) for c in calls) == [10] * 10
    assert sorted(job.rows()) == expected_rows(100)
    summary = job.summary()
    assert summary["status"] == "Completed"
    assert summary["rows"] == 100
    assert summary["mini_batches"] == {"total": 10, "done": 10, "failed": 0}
    assert summary["items"] == {"succeeded": 100, "failed": 0}
    assert "progress: 10/10 mini-batches (100.0%), 100 rows, 0 failed items" in proc.stderr
    assert "rows/s, ETA 0s" in proc.stderr


def test_last_mini_batch_is_shorter_and_glob_input_is_sorted(job_factory):
    job = job_factory(n_files=25, mini_batch_size=10)
    job.settings["input"] = str(job.inputs / "*.txt")
    job.write_settings()
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    assert [(c[1], c[2]) for c in job.calls()] == [
        ("00000-f00000.txt", "10"),
        ("00010-f00010.txt", "10"),
        ("00020-f00020.txt", "5"),
    ]
    assert job.rows() == expected_rows(25)  # one worker: commit order is mini-batch order


def test_file_uri_input_goes_through_fsspec(job_factory):
    job = job_factory(n_files=3, mini_batch_size=2)
    job.settings["input"] = "file://" + str(job.inputs)
    job.write_settings()
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    assert job.rows() == expected_rows(3)


def test_flaky_mini_batch_is_retried_until_it_succeeds(job_factory):
    job = job_factory(
        n_files=30,
        max_retries=3,
        env={"FAIL_ON": "00010-f00010.txt", "FAIL_TIMES": "2"},
    )
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    assert (job.attempts / "00010-f00010.txt").read_text() == "xxx"
    assert sorted(job.rows()) == expected_rows(30)
    assert "mini-batch 1 attempt 1/4 failed: ValueError: flaky failure on 00010-f00010.txt attempt 1; retrying" in (
        proc.stderr
    )
    assert job.summary()["failures"] == []


def test_mini_batch_that_always_raises_gets_exactly_max_retries_plus_one_attempts(job_factory):
    job = job_factory(
        n_files=30,
        max_retries=2,
        env={"FAIL_ON": "00010-f00010.txt", "FAIL_TIMES": "99"},
    )
    proc = job.run()
    assert proc.returncode == 0, proc.stderr  # error_threshold -1 ignores failures
    assert (job.attempts / "00010-f00010.txt").read_text() == "xxx"
    assert sorted(job.rows()) == expected_rows(30, skip=set(range(10, 20)))
    summary = job.summary()
    assert summary["status"] == "Completed"
    assert summary["items"] == {"succeeded": 20, "failed": 10}
    assert summary["failures"] == [
        {
            "mini_batch": 1,
            "failed_items": 10,
            "attempts": 3,
            "reason": "ValueError: flaky failure on 00010-f00010.txt attempt 3",
        }
    ]


def test_hung_mini_batch_is_killed_after_timeout_exactly_max_retries_plus_one_times(job_factory):
    job = job_factory(n_files=30, max_retries=2, timeout=1.0, env={"HANG_ON": "00010-f00010.txt"})
    started = time.monotonic()
    proc = job.run(timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 20
    hung = [c for c in job.calls() if c[1] == "00010-f00010.txt"]
    assert len(hung) == 3
    for pid, _, _ in hung:  # every hung worker was killed, none left sleeping
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    assert job.summary()["failures"] == [
        {"mini_batch": 1, "failed_items": 10, "attempts": 3, "reason": "run() timed out after 1s"}
    ]
    assert sorted(job.rows()) == expected_rows(30, skip=set(range(10, 20)))


def test_hung_mini_batch_behind_a_deep_queue_is_timed_from_its_own_start(job_factory):
    # 400 mini-batches of ~10 ms: workers get deep queues and their replies are read once per tick, not one by one.
    # The hung one must still be killed one timeout after it started (not earlier, counting from a reply read late),
    # and what was queued behind it runs once elsewhere.
    job = job_factory(
        n_files=400,
        mini_batch_size=1,
        max_retries=0,
        timeout=1.0,
        max_concurrency_per_instance=2,
        env={"HANG_ON": "00300-f00300.txt", "SLEEP": "0.01"},
    )
    proc = job.run(timeout=120)
    assert proc.returncode == 0, proc.stderr
    calls = [c[1] for c in job.calls()]
    assert sorted(calls) == sorted(f"{i:05d}-f{i:05d}.txt" for i in range(400))  # each once, the hung one too
    summary = job.summary()
    assert summary["failures"] == [
        {"mini_batch": 300, "failed_items": 1, "attempts": 1, "reason": "run() timed out after 1s"}
    ]
    journal = job.out / ".predictions.csv.batch" / "journal.jsonl"
    record = next(r for r in map(json.loads, journal.read_text().splitlines()) if r["mini_batch"] == 300)
    assert 1.0 <= record["seconds"] < 5.0
    assert sorted(job.rows()) == expected_rows(400, skip={300})


@pytest.mark.parametrize(
    ("bad", "status", "code", "calls"),
    [
        pytest.param({1, 2, 3, 11, 12}, "Completed", 0, 10, id="5-bad-allowed"),
        pytest.param({1, 2, 3, 11, 12, 13}, "Failed", 3, 2, id="6-bad-fails-and-stops"),
    ],
)
def test_error_threshold_counts_gaps_and_stops_new_mini_batches(job_factory, bad, status, code, calls):
    job = job_factory(n_files=100, bad=bad, error_threshold=5, env={"BAD_PREFIX": "bad"})
    proc = job.run()
    assert proc.returncode == code, proc.stderr
    assert len(job.calls()) == calls
    summary = job.summary()
    assert summary["status"] == status
    assert summary["items"]["failed"] == len(bad)
    if status == "Failed":
        assert summary["error"] == "6 failed items exceed error_threshold 5"
        assert "error threshold exceeded: 6 failed items > error_threshold 5; no new mini-batches start" in proc.stderr
        assert summary["failures"][-1] == {
            "mini_batch": 1,
            "failed_items": 3,
            "attempts": 1,
            "reason": "run() returned 7 items for 10 files",
        }


def test_error_threshold_minus_one_ignores_failures(job_factory):
    job = job_factory(n_files=20, bad=set(range(20)), error_threshold=-1, env={"BAD_PREFIX": "bad"})
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    assert job.summary()["status"] == "Completed"
    assert job.summary()["items"] == {"succeeded": 0, "failed": 20}


def test_four_concurrent_workers_write_no_torn_lines(job_factory):
    job = job_factory(n_files=400, mini_batch_size=1, max_concurrency_per_instance=4, env={"PAD": "5000"})
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    rows = job.rows()
    assert len(rows) == 400
    assert sorted(rows) == expected_rows(400, pad=5000)  # every line whole, every row once
    assert len({c[0] for c in job.calls()}) == 4  # four worker processes took part


def _wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_sigkill_at_40_percent_then_restart_writes_every_row_exactly_once(job_factory):
    job = job_factory(
        n_files=200, mini_batch_size=5, max_concurrency_per_instance=2, env={"SLEEP": "0.05", "PAD": "2000"}
    )
    proc = job.start()
    try:
        _wait_for(lambda: job.journal_lines() >= 16)  # 16 of 40 mini-batches committed
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    done_before = job.journal_lines()
    assert 16 <= done_before < 40
    restarted = job.run()
    assert restarted.returncode == 0, restarted.stderr
    assert f"40 mini-batches of 5, 40 for this instance, {40 - done_before} to do (resumed)" in restarted.stderr
    rows = job.rows()
    assert len(rows) == 200
    assert Counter(rows) == Counter(expected_rows(200, pad=2000))
    assert job.output.read_bytes().endswith(b"\n")
    assert job.summary()["status"] == "Completed"


def test_restart_repairs_torn_output_and_journal_tails(job_factory):
    job = job_factory(n_files=40, mini_batch_size=10)
    first = job.run()
    assert first.returncode == 0, first.stderr
    journal = job.out / ".predictions.csv.batch" / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    # As if killed mid-commit: the last commit's rows reached the output but its journal line did not
    # (only a torn start of it), and a further torn row follows.
    journal.write_bytes(b"".join(lines[:-1]) + b'{"mini_batch": 3, "sta')
    with open(job.output, "ab") as f:
        f.write(b"00099-torn")
    second = job.run()
    assert second.returncode == 0, second.stderr
    assert "1 to do (resumed)" in second.stderr
    assert sorted(job.rows()) == expected_rows(40)
    assert len(job.calls()) == 5  # 4 mini-batches, the un-journaled one scored again
    assert journal.read_bytes().count(b"\n") == 4


def test_restart_after_a_machine_crash_drops_records_whose_rows_never_reached_the_disk(job_factory):
    job = job_factory(n_files=40, mini_batch_size=10)
    first = job.run()
    assert first.returncode == 0, first.stderr
    journal = job.out / ".predictions.csv.batch" / "journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    second_start = sorted(r["start"] for r in records)[1]
    # The journal page reached the disk, the output's last pages did not: the file ends early, and the
    # bytes of the second mini-batch (in file order) are zeros.
    data = bytearray(job.output.read_bytes())
    data[second_start : second_start + 5] = b"\0" * 5
    job.output.write_bytes(bytes(data[: len(data) - 7]))
    second = job.run()
    assert second.returncode == 0, second.stderr
    assert "3 to do (resumed)" in second.stderr  # only the first mini-batch in file order survives
    assert sorted(job.rows()) == expected_rows(40)
    assert len(job.calls()) == 7


@pytest.mark.parametrize("job_json", [pytest.param(b"", id="empty-job-json"), pytest.param(None, id="no-job-json")])
def test_restart_after_a_crash_before_the_claim_was_durable_starts_fresh(job_factory, job_json):
    # job.json is fsync'd while the first mini-batches run and before the first commit: a machine crash before that
    # leaves an empty or missing job.json next to an empty journal and an empty output. Nothing was committed.
    job = job_factory(n_files=20, mini_batch_size=10)
    state = job.out / ".predictions.csv.batch"
    state.mkdir(parents=True)
    (state / "journal.jsonl").write_bytes(b"")
    job.output.write_bytes(b"")
    if job_json is not None:
        (state / "job.json").write_bytes(job_json)
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    assert "2 to do" in proc.stderr and "(resumed)" not in proc.stderr
    assert sorted(job.rows()) == expected_rows(20)
    assert json.loads((state / "job.json").read_text())["job_id"] == "job-1"


def test_missing_job_json_next_to_committed_rows_is_an_error(job_factory):
    job = job_factory(n_files=20, mini_batch_size=10)
    assert job.run().returncode == 0
    state = job.out / ".predictions.csv.batch"
    (state / "job.json").unlink()
    proc = job.run()
    assert proc.returncode == 3
    assert (
        f"{state / 'job.json'}: missing or unreadable, but journal.jsonl or predictions.csv holds data; "
        "choose another output location or set overwrite: true"
    ) in proc.stderr
    assert sorted(job.rows()) == expected_rows(20)  # untouched


def test_sigterm_flushes_finished_work_and_restart_completes(job_factory):
    job = job_factory(n_files=100, mini_batch_size=5, env={"SLEEP": "0.1"}, drain_timeout=5)
    proc = job.start()
    try:
        _wait_for(lambda: job.journal_lines() >= 4)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 143, stderr
    assert "SIGTERM: no new mini-batches" in stderr
    done = job.journal_lines()
    assert 4 <= done < 20
    # Finished work is in the output, whole lines, in order (one worker); nothing started after SIGTERM but
    # the mini-batch that was running (queued ones were handed back unstarted).
    assert job.rows() == expected_rows(100)[: done * 5]
    assert len(job.calls()) == done
    summary = job.summary()
    assert summary["status"] == "Interrupted"
    assert summary["mini_batches"]["done"] == done
    restarted = job.run()
    assert restarted.returncode == 0, restarted.stderr
    assert job.rows() == expected_rows(100)


def test_existing_output_file_is_an_error_unless_overwrite(job_factory):
    job = job_factory(n_files=10)
    job.out.mkdir()
    job.output.write_text("old\n")
    proc = job.run()
    assert proc.returncode == 3
    assert (
        f"{job.output}: output file already exists; choose another output_file_name or set overwrite: true"
        in proc.stderr
    )
    assert job.output.read_text() == "old\n"
    proc = job.run("--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert job.rows() == expected_rows(10)


def test_output_of_another_job_is_an_error_unless_overwrite(job_factory):
    job = job_factory(n_files=10)
    assert job.run().returncode == 0
    proc = job.run("--job-id", "job-2")
    assert proc.returncode == 3
    assert f"{job.output}: output belongs to job 'job-1', not 'job-2'" in proc.stderr
    proc = job.run("--job-id", "job-2", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert job.rows() == expected_rows(10)
    assert job.summary()["job_id"] == "job-2"


def test_dataframe_results_keep_their_columns(job_factory):
    job = job_factory(n_files=12, mini_batch_size=5, entry_script=str(FIXTURES / "score_df.py"))
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    rows = job.rows()
    assert rows[0] == 'file,"value, doubled"'
    assert rows[1:] == [f"{i:05d}-f{i:05d}.txt,{2 * i}" for i in range(12)]


def test_summary_only_writes_no_rows(job_factory):
    job = job_factory(n_files=20, output_action="summary_only")
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    assert not job.output.exists()
    assert job.summary()["status"] == "Completed"
    assert job.summary()["output"] is None
    assert job.summary()["rows"] == 20


def test_init_failure_fails_the_job(job_factory):
    job = job_factory(n_files=20, env={"FAIL_INIT": "1"})
    proc = job.run()
    assert proc.returncode == 3
    assert job.summary()["status"] == "Failed"
    assert job.summary()["error"] == "init() failed: RuntimeError: model file is corrupt"
    assert job.calls() == []


def test_init_can_write_to_the_output_folder_of_a_new_job(job_factory):
    job = job_factory(n_files=5, max_concurrency_per_instance=2, env={"INIT_WRITES": "1"})
    assert not job.out.exists()
    proc = job.run()
    assert proc.returncode == 0, proc.stderr
    # A worker whose init() had not finished when the job ended is killed without writing: one file at least.
    written = [p.read_text() for p in job.out.glob("init-*.txt")]
    assert written and set(written) == {"ok"}
    assert sorted(job.rows()) == expected_rows(5)


def _run_instances(job: Job, count: int, timeout: float) -> list[int]:
    """Run instances 0..count-1 of ``job`` at once; their exit codes (every process ended and closed)."""
    procs = [job.start("--instance-index", str(i)) for i in range(count)]
    try:
        return [p.wait(timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.stdout.close()
            p.stderr.close()


def test_instances_split_mini_batches_by_index(job_factory):
    job = job_factory(n_files=95, instance_count=3, max_concurrency_per_instance=2)
    codes = _run_instances(job, 3, timeout=120)
    assert codes == [0, 0, 0]
    assert sorted(job.rows()) == expected_rows(95)
    assert len(job.calls()) == 10
    summary = job.summary()
    assert summary["status"] == "Completed"
    journal = (job.out / ".predictions.csv.batch" / "journal.jsonl").read_text().splitlines()
    by_instance = Counter((json.loads(x)["instance"], json.loads(x)["mini_batch"] % 3) for x in journal)
    assert sorted(by_instance) == [(0, 0), (1, 1), (2, 2)]


def test_instances_finishing_together_leave_a_completed_summary(tmp_path):
    # Each instance writes the summary at its end; two that end at the same moment must not leave the summary of
    # the one that saw less (status Running) as the last word.
    for attempt in range(12):
        (tmp_path / str(attempt)).mkdir()
        job = Job(tmp_path / str(attempt), n_files=4, mini_batch_size=2, instance_count=2)
        codes = _run_instances(job, 2, timeout=60)
        assert codes == [0, 0]
        assert job.summary()["status"] == "Completed", attempt


def test_error_threshold_is_exact_across_instances(job_factory):
    """Issue 13 item 12: instance 1 used to start one more mini-batch after instance 0 had committed the failure
    that passed the threshold (it read the other instance's failures only every 50 ms, after dispatching)."""
    job = job_factory(
        n_files=8,
        bad={0},
        mini_batch_size=1,
        instance_count=2,
        error_threshold=0,
        env={
            "BAD_PREFIX": "bad",
            "WAIT_FOR_CALL": "00000-bad00000.txt>00001-f00001.txt",
            "WAIT_FOR_FAILURE_ON": "00001-f00001.txt",
        },
    )
    codes = _run_instances(job, 2, timeout=120)
    assert codes == [3, 3]
    # Mini-batch 0 (instance 0) fails only once mini-batch 1 (instance 1) runs, and mini-batch 1 ends only once that
    # failure is committed: after it, no mini-batch may start on either instance.
    assert sorted(c[1] for c in job.calls()) == ["00000-bad00000.txt", "00001-f00001.txt"]
    summary = job.summary()
    assert (summary["status"], summary["error"]) == ("Failed", "1 failed items exceed error_threshold 0")


def test_job_completion_index_env_selects_the_share(job_factory):
    job = job_factory(n_files=30, instance_count=3)
    proc = subprocess.run(
        job.command(),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOB_COMPLETION_INDEX": "2"},
        cwd=job.tmp,
    )
    assert proc.returncode == 0, proc.stderr
    assert [c[1] for c in job.calls()] == ["00020-f00020.txt"]
    assert job.summary()["status"] == "Running"  # the other two instances have not run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--mini-batch-size", "0"],
            "mini_batch_size: got 0; Input should be greater than or equal to 1",
            id="mini-batch-size",
        ),
        pytest.param(
            ["--instance-index", "4"],
            "instance index: got 4; must be in [0, 1) (JOB_COMPLETION_INDEX or --instance-index)",
            id="instance-index",
        ),
    ],
)
def test_bad_settings_name_field_and_value(job_factory, args, message):
    job = job_factory(n_files=1)
    proc = job.run(*args)
    assert proc.returncode == 3
    assert message in proc.stderr


def test_input_matching_nothing_is_an_error(job_factory):
    job = job_factory(n_files=1)
    proc = job.run("--input", str(job.tmp / "nothing" / "*.csv"))
    assert proc.returncode == 3
    assert f"input: got '{job.tmp / 'nothing' / '*.csv'}'; it matches no files" in proc.stderr


def test_single_file_over_http_is_downloaded_for_run(job_factory, tmp_path):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "www"
    served.mkdir()
    (served / "00007-remote.txt").write_text("7")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        job = job_factory(n_files=1)
        url = f"http://127.0.0.1:{server.server_address[1]}/00007-remote.txt"
        proc = job.run("--input", url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert proc.returncode == 0, proc.stderr
    assert job.rows() == ["00007-remote.txt,7,"]
