"""Property tests of the journal: whatever a crash leaves behind, a reopened journal keeps every committed
mini-batch exactly once, in whole lines, and drops the rest so it can be scored again."""

from __future__ import annotations

import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.batch_settings import RunnerSettings
from serving.batch.journal import Commit, Journal

FILES = [f"/in/f{i:03d}" for i in range(40)]


def rows(mb: int, n: int) -> bytes:
    return b"".join(f"mb{mb}-row{i},{'x' * (mb % 7)}\n".encode() for i in range(n))


def journal_for(folder: Path) -> Journal:
    s = RunnerSettings(job_id="prop", input="/in", output_dir=str(folder), mini_batch_size=2)
    return Journal(s, sync_interval=3600)


crash = st.fixed_dictionaries(
    {
        # Mini-batches committed before the crash, in groups (one commit() call per group).
        "groups": st.lists(st.lists(st.integers(0, 19), min_size=1, max_size=4, unique=True), max_size=6),
        # What the crash leaves: bytes cut from the journal's end, junk appended to the output and/or the journal.
        "journal_cut": st.integers(0, 80),
        "output_junk": st.binary(max_size=30),
        "journal_junk": st.sampled_from([b"", b'{"mini_batch": 1', b"\x00\x00\x00", b"garbage\n"]),
        # A machine crash: output bytes lost from the end (a page that never reached the disk).
        "output_cut": st.integers(0, 60),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=crash)
def test_reopened_journal_keeps_each_committed_row_once(tmp_path_factory, case):
    folder = tmp_path_factory.mktemp("out")
    j = journal_for(folder)
    j.open("prop", FILES, 20)
    committed: set[int] = set()
    for group in case["groups"]:
        todo = [mb for mb in group if mb not in committed]
        j.commit([Commit(mb, rows(mb, 1 + mb % 3), 1 + mb % 3, 2, 0, 1, 0.01) for mb in todo])
        committed.update(todo)
    j.close()

    out = folder / "predictions.csv"
    journal = folder / ".predictions.csv.batch" / "journal.jsonl"
    data = journal.read_bytes()
    journal.write_bytes(data[: max(0, len(data) - case["journal_cut"])] + case["journal_junk"])
    body = out.read_bytes()
    out.write_bytes(body[: max(0, len(body) - case["output_cut"])] + case["output_junk"])

    again = journal_for(folder)
    again.open("prop", FILES, 20)
    records = sorted(again.state.records.values(), key=lambda r: r["start"])
    again.close()
    text = out.read_bytes()
    # The output is exactly the journaled ranges, back to back, each matching its CRC: whole lines only.
    pos = 0
    for r in records:
        assert r["start"] == pos
        assert zlib.crc32(text[r["start"] : r["end"]]) == r["crc"]
        assert text[r["start"] : r["end"]] == rows(r["mini_batch"], r["rows"])
        pos = r["end"]
    assert len(text) == pos
    assert text == b"" or text.endswith(b"\n")
    # Nothing is kept that was never committed; each mini-batch at most once.
    kept = [r["mini_batch"] for r in records]
    assert len(kept) == len(set(kept))
    assert set(kept) <= committed
    # Scoring the dropped mini-batches again and committing them completes the output exactly once.
    final = journal_for(folder)
    final.open("prop", FILES, 20)
    final.commit([Commit(mb, rows(mb, 1 + mb % 3), 1 + mb % 3, 2, 0, 1, 0.01) for mb in sorted(committed - set(kept))])
    final.close()
    lines = out.read_bytes().splitlines()
    expected = [line for mb in sorted(committed) for line in rows(mb, 1 + mb % 3).splitlines()]
    assert sorted(lines) == sorted(expected)
