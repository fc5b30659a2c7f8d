"""The runner <-> worker pipe protocol: one message carries several mini-batches; each gets its own reply, in order."""

from __future__ import annotations

import multiprocessing as mp
import time

from batch_helpers import SCORE, make_inputs

from serving.batch.worker import worker_main


def _start(tmp_path, stopping=None):
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    (tmp_path / "attempts").mkdir()
    (tmp_path / "out").mkdir()
    env = {"ATTEMPTS_DIR": str(tmp_path / "attempts"), "AZUREML_BI_OUTPUT_PATH": str(tmp_path / "out")}
    proc = ctx.Process(target=worker_main, args=(child, str(SCORE), None, env, stopping), daemon=True)
    proc.start()
    child.close()
    assert parent.poll(30)
    assert parent.recv() == ("ready",)
    return proc, parent


def _stop(proc, conn):
    conn.send(None)
    proc.join(10)
    conn.close()
    assert proc.exitcode == 0


def test_several_mini_batches_in_one_message_each_get_a_reply_in_order(tmp_path):
    files = [str(p) for p in make_inputs(tmp_path / "in", 3)]
    proc, conn = _start(tmp_path)
    try:
        sent = time.monotonic()
        conn.send([(4, files[:2]), (5, files[2:])])
        replies = [conn.recv() for _ in range(2)]
        received = time.monotonic()
    finally:
        _stop(proc, conn)
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 2  # one run() per mini-batch
    assert [r[:2] for r in replies] == [("ok", 4), ("ok", 5)]
    assert replies[0][2] == b"00000-f00000.txt,0,\n00001-f00001.txt,1,\n"
    assert replies[0][3:6] == (2, 2, None)
    assert replies[1][2:6] == (b"00002-f00002.txt,2,\n", 1, 1, None)
    assert sent <= replies[0][6] <= replies[1][6] <= received  # when each ended, on the system-wide monotonic clock


def test_mini_batches_queued_after_stopping_are_handed_back_unstarted(tmp_path):
    files = [str(p) for p in make_inputs(tmp_path / "in", 2)]
    stopping = mp.get_context("fork").Event()
    proc, conn = _start(tmp_path, stopping)
    try:
        stopping.set()
        conn.send([(0, files[:1]), (1, files[1:])])
        replies = [conn.recv() for _ in range(2)]
    finally:
        _stop(proc, conn)
    assert [r[:2] for r in replies] == [("skipped", 0), ("skipped", 1)]
    assert not (tmp_path / "calls.log").exists()  # run() was never called
    assert list((tmp_path / "attempts").iterdir()) == []
