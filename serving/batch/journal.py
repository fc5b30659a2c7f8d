"""Exactly-once output: the append file plus a journal of committed mini-batches.

Design (docs/batch.md has the long form):

* Every finished mini-batch (succeeded, or failed after its last retry) is *committed* under an exclusive
  ``flock`` on ``.<output>.batch.lock``: its CSV rows are written at the output's committed end offset, then
  one JSON line naming the mini-batch, its byte range ``[start, end)`` and the CRC-32 of those bytes is
  appended to ``journal.jsonl``. The journal line is the commit point.
* Whoever takes the lock first repairs what a killed writer left: a journal tail without its newline is cut
  off, and output bytes past the last committed ``end`` (rows whose journal line never made it) are truncated.
  So after any crash the output holds exactly the rows of journaled mini-batches, whole lines only, and a
  restarted runner skips journaled mini-batches.
* A killed *process* loses nothing the kernel already has, so commits do not wait for the disk; both files
  are fsync'd every ``sync_interval`` seconds by a background thread, at SIGTERM and at the end. A killed
  *machine* may lose the last unsynced commits, or keep a journal page whose output page never reached the
  disk: on open the runner checks every record's byte range and CRC against the output and drops the first
  record that does not match and all after it, so those mini-batches are scored again - still exactly once.
* Instances of one job (Kubernetes Indexed Job pods, or local processes) share the output folder and the
  lock; ``job.json`` pins the job id and its input so a different job cannot append to the same file. A new
  job's ``job.json`` is fsync'd by the sync thread while the first mini-batches run, and before the first
  commit; a machine crash before that leaves it empty or missing next to an empty journal and output, which the
  next open clears (nothing was committed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serving.batch.runconfig import JobSettings


class OutputConflictError(RuntimeError):
    """The output location belongs to another job or has been tampered with."""


# Plain classes, not dataclasses: importing dataclasses (and inspect behind it) and generating their methods is
# a measurable part of a runner's start (docs/batch.md, performance).
class Commit:
    """One mini-batch ready to be committed."""

    __slots__ = ("attempts", "columns", "data", "error", "failed_items", "items", "mini_batch", "rows", "seconds")

    def __init__(
        self,
        mini_batch: int,
        data: bytes,
        rows: int,
        items: int,
        failed_items: int,
        attempts: int,
        seconds: float,
        error: str | None = None,
        columns: list[str] | None = None,
    ) -> None:
        """One field per argument; ``error`` and ``columns`` default to None."""
        self.mini_batch = mini_batch
        self.data = data
        self.rows = rows
        self.items = items
        self.failed_items = failed_items
        self.attempts = attempts
        self.seconds = seconds
        self.error = error
        self.columns = columns


class JournalState:
    """What the journal says so far (all instances)."""

    __slots__ = ("failed_items", "output_end", "records")

    def __init__(self) -> None:
        """Empty: no records, output end 0."""
        self.records: dict[int, dict[str, Any]] = {}
        self.output_end = 0
        self.failed_items = 0  # over every committed mini-batch, kept up to date (the runner reads it per loop)

    def add(self, rec: dict[str, Any]) -> None:
        """Account for one journal record."""
        old = self.records.get(rec["mini_batch"])
        if old is not None:
            self.failed_items -= old["failed_items"]
        self.records[rec["mini_batch"]] = rec
        self.failed_items += rec["failed_items"]
        self.output_end = max(self.output_end, rec["end"])


def fingerprint(files: list[str], mini_batch_size: int) -> str:
    """Hash of the sorted input list and the split, so a resumed job proves it scores the same files."""
    h = hashlib.sha256(str(mini_batch_size).encode())
    if files:
        h.update(b"\0" + "\0".join(files).encode())  # the same digest as one update per file, ~10x faster
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, data: dict[str, Any], sync: bool = True) -> None:
    """Write JSON so that readers see the old or the new file, never half of one.

    ``sync`` (default true): fsync the content before the rename. Without it, only running processes are
    guaranteed whole files; a machine crash may leave an empty one (the caller must sync or cope).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class Journal:
    """The output file and its journal for one job; one object per runner process."""

    def __init__(self, settings: JobSettings, instance_index: int = 0, sync_interval: float = 1.0) -> None:
        """Point at the output folder; nothing is opened until :meth:`open`.

        Args:
            settings: The job's settings.
            instance_index: This instance's index (recorded in each journal line); default 0.
            sync_interval: Longest time in seconds between fsyncs of output and journal; default 1.
        """
        self.sync_interval = sync_interval
        self._last_sync = time.monotonic()
        self._sync_stop = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self.settings = settings
        self.instance_index = instance_index
        self.state_dir = settings.state_dir
        self.journal_path = self.state_dir / "journal.jsonl"
        self.job_path = self.state_dir / "job.json"
        self.lock_path = Path(settings.output_dir) / f".{settings.output_file_name}.batch.lock"
        self.output_path = settings.output_path
        self.write_rows = settings.output_action == "append_row"
        self.state = JournalState()
        self._journal_offset = 0
        self._out_fd: int | None = None
        self._journal_fd: int | None = None
        self.dropped_on_open = 0
        self.job: dict[str, Any] | None = None  # job.json as read or written by open()
        # A new job's job.json is made durable by the sync thread while the first mini-batches run, not inside
        # open(): its fsyncs were the longest wait of a runner's start. commit() waits for it (a commit's bytes
        # must never reach the disk before the claim that makes them resumable).
        self._claim_unsynced = False
        self._claim_lock = threading.Lock()

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The job's exclusive lock (commits take it): what is read under it is every commit made before it."""
        return self._locked()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def open(self, job_id: str, files: list[str], mini_batches: int) -> bool:
        """Claim the output folder for ``job_id``, or resume it.

        Returns:
            True when the job was already started (a restart or another instance), False when fresh.

        Raises:
            OutputConflictError: the output (or state) belongs to another job and ``overwrite`` is false,
                or the same job id now lists different input files.
        """
        Path(self.settings.output_dir).mkdir(parents=True, exist_ok=True)
        fp = fingerprint(files, self.settings.mini_batch_size)
        with self._locked():
            resumed = False
            job = self._read_job()
            if job is None and self.state_dir.is_dir():
                self._discard_unsynced_claim()
            if job is not None:
                if job.get("job_id") == job_id:
                    if job.get("fingerprint") != fp:
                        raise OutputConflictError(
                            f"{self.job_path}: job {job_id!r} was started with {job.get('files')} input files "
                            f"and now lists {len(files)} (or different ones); start a new job id"
                        )
                    resumed = True
                elif not self.settings.overwrite:
                    raise OutputConflictError(
                        f"{self.output_path}: output belongs to job {job.get('job_id')!r}, not {job_id!r}; "
                        "choose another output location or set overwrite: true"
                    )
                else:
                    import shutil  # rarely needed: not at every runner's start

                    shutil.rmtree(self.state_dir)
                    with contextlib.suppress(FileNotFoundError):
                        self.output_path.unlink()
            elif self.output_path.exists():
                if not self.settings.overwrite:
                    raise OutputConflictError(
                        f"{self.output_path}: output file already exists; "
                        "choose another output_file_name or set overwrite: true"
                    )
                self.output_path.unlink()
            if resumed:
                self.job = job
            else:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                self.journal_path.touch()
                self.job = {
                    "job_id": job_id,
                    "fingerprint": fp,
                    "files": len(files),
                    "mini_batches": mini_batches,
                    "mini_batch_size": self.settings.mini_batch_size,
                    "instance_count": self.settings.instance_count,
                    "created": time.time(),
                }
                atomic_write_json(self.job_path, self.job, sync=False)
                self._claim_unsynced = True  # see sync_claim()
            if self.write_rows:
                self._out_fd = os.open(self.output_path, os.O_RDWR | os.O_CREAT, 0o644)
            self._journal_fd = os.open(self.journal_path, os.O_RDWR)
            self._read_new(repair=True)
            self._verify()
            if self._out_fd is not None and os.fstat(self._out_fd).st_size > self.state.output_end:
                # Rows of a commit whose journal line never made it: gone now, not only at the next commit.
                os.ftruncate(self._out_fd, self.state.output_end)
        return resumed

    def _read_job(self) -> dict[str, Any] | None:
        """``job.json``, or None when it is missing or unreadable (a claim a machine crash cut short)."""
        try:
            job = json.loads(self.job_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return job if isinstance(job, dict) else None

    def _discard_unsynced_claim(self) -> None:
        """The state folder has no readable ``job.json``: a claim that never became durable, so nothing was committed.

        Then the journal and the output are empty, and the folder is cleared for a fresh start. Anything else was
        changed outside the runner: an error, unless ``overwrite`` (then everything goes).

        Raises:
            OutputConflictError: journal or output hold data and ``overwrite`` is false.
        """
        import shutil  # rarely needed: not at every runner's start

        def size(path: Path) -> int:
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return 0

        if (size(self.journal_path) or size(self.output_path)) and not self.settings.overwrite:
            raise OutputConflictError(
                f"{self.job_path}: missing or unreadable, but {self.journal_path.name} or {self.output_path.name} "
                "holds data; choose another output location or set overwrite: true"
            )
        shutil.rmtree(self.state_dir)
        with contextlib.suppress(FileNotFoundError):
            self.output_path.unlink()

    def sync_claim(self) -> None:
        """Make a new job's ``job.json`` durable (its content, then its name); a no-op once done."""
        with self._claim_lock:
            if not self._claim_unsynced:
                return
            fd = os.open(self.job_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(self.state_dir)
            self._claim_unsynced = False

    def _verify(self) -> None:
        """Drop journal records whose bytes are not in the output as committed (a machine crash), see above."""
        assert self._journal_fd is not None
        records = sorted(self.state.records.values(), key=lambda r: r["start"] if r["end"] > r["start"] else -1)
        bad_from: int | None = None
        if self.write_rows and records:
            assert self._out_fd is not None
            size = os.fstat(self._out_fd).st_size
            for rec in records:
                if rec["end"] == rec["start"]:
                    continue
                if rec["end"] > size or zlib.crc32(
                    os.pread(self._out_fd, rec["end"] - rec["start"], rec["start"])
                ) != rec.get("crc"):
                    bad_from = rec["start"]
                    break
        if bad_from is None:
            return
        keep = [r for r in self._ordered_lines() if not (r["end"] > r["start"] and r["start"] >= bad_from)]
        dropped = len(self.state.records) - len(keep)
        payload = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in keep)
        os.ftruncate(self._journal_fd, 0)
        os.pwrite(self._journal_fd, payload, 0)
        os.fsync(self._journal_fd)
        assert self._out_fd is not None
        os.ftruncate(self._out_fd, bad_from)
        os.fsync(self._out_fd)
        self.state = JournalState()
        self._journal_offset = 0
        self._read_new(repair=False)
        self.dropped_on_open = dropped

    def _ordered_lines(self) -> list[dict[str, Any]]:
        assert self._journal_fd is not None
        raw = os.pread(self._journal_fd, self._journal_offset, 0)
        return [json.loads(line) for line in raw.splitlines()]

    def start_background_sync(self) -> None:
        """fsync from a thread every ``sync_interval`` instead of inside :meth:`commit`.

        An fsync on a busy disk can take long; in a thread it never holds up the runner's loop (the workers keep
        getting mini-batches). Call after the worker processes are forked or with fork-safe code only.
        """

        def loop() -> None:
            try:
                self.sync_claim()  # at once: the first commit waits for it
                while not self._sync_stop.wait(self.sync_interval):
                    self.sync()
            except OSError:
                return  # files closed under us at shutdown; close() syncs itself

        self._sync_thread = threading.Thread(target=loop, name="journal-sync", daemon=True)
        self._sync_thread.start()

    def sync(self) -> None:
        """fsync a new job's claim, the output, then the journal."""
        self.sync_claim()
        if self._out_fd is not None:
            os.fsync(self._out_fd)
        if self._journal_fd is not None:
            os.fsync(self._journal_fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync and close the files."""
        if self._sync_thread is not None:
            self._sync_stop.set()
            self._sync_thread.join()
            self._sync_thread = None
        if self._journal_fd is not None:
            self.sync()
        for fd in (self._out_fd, self._journal_fd):
            if fd is not None:
                os.close(fd)
        self._out_fd = self._journal_fd = None

    def _read_new(self, repair: bool) -> None:
        """Read complete journal lines past what we read; with the lock held, cut off a torn tail."""
        assert self._journal_fd is not None
        size = os.fstat(self._journal_fd).st_size
        if size <= self._journal_offset:
            return
        chunk = os.pread(self._journal_fd, size - self._journal_offset, self._journal_offset)
        last_nl = chunk.rfind(b"\n")
        complete = chunk[: last_nl + 1]
        used = 0
        for line in complete.splitlines(keepends=True):
            try:
                rec = json.loads(line)
            except ValueError:
                break  # garbage left by a machine crash: it and everything after it never committed
            self.state.add(rec)
            used += len(line)
        complete = complete[:used]
        self._journal_offset += len(complete)
        if repair and len(complete) < len(chunk):
            # A writer died between write() and its newline: that commit never happened.
            os.ftruncate(self._journal_fd, self._journal_offset)
            os.fsync(self._journal_fd)

    def refresh(self) -> JournalState:
        """Pick up commits of other instances (no lock needed: only complete lines are read)."""
        self._read_new(repair=False)
        return self.state

    def commit(self, commits: list[Commit]) -> None:
        """Append the rows of ``commits`` and journal them, all or nothing (see the module docstring)."""
        if not commits:
            return
        assert self._journal_fd is not None
        self.sync_claim()  # usually done by the sync thread already
        with self._locked():
            self._read_new(repair=True)
            # A mini-batch committed meanwhile by a twin (an old pod of the same index still running) stays once.
            commits = [c for c in commits if c.mini_batch not in self.state.records]
            if not commits:
                return
            start = self.state.output_end
            lines = []
            if self.write_rows:
                assert self._out_fd is not None
                size = os.fstat(self._out_fd).st_size
                if size < start:
                    raise OutputConflictError(
                        f"{self.output_path}: file is {size} bytes but {start} bytes were committed; "
                        "it was changed outside the runner"
                    )
                if size > start:
                    os.ftruncate(self._out_fd, start)  # rows of a commit that never reached the journal
                buf = bytearray()
                pos = start
                for c in commits:
                    data = c.data
                    if pos == 0 and c.columns and data:
                        data = (",".join(_csv_field(x) for x in c.columns) + "\n").encode() + data
                    buf += data
                    lines.append(self._record(c, pos, pos + len(data), zlib.crc32(data)))
                    pos += len(data)
                if buf:
                    os.pwrite(self._out_fd, bytes(buf), start)
            else:
                lines = [self._record(c, 0, 0, 0) for c in commits]
            # _record's keys are in sorted order already: the default encoder (no sort_keys) is the fast one.
            payload = ("\n".join(map(json.dumps, lines)) + "\n").encode()
            os.pwrite(self._journal_fd, payload, self._journal_offset)
            self._journal_offset += len(payload)  # our own lines: no need to read them back
            for rec in lines:
                self.state.add(rec)
            if self._sync_thread is None and time.monotonic() - self._last_sync >= self.sync_interval:
                self.sync()

    def _record(self, c: Commit, start: int, end: int, crc: int) -> dict[str, Any]:
        return {  # keys in sorted order (see commit())
            "attempts": c.attempts,
            "committed_at": time.time(),
            "crc": crc,
            "end": end,
            "error": c.error,
            "failed_items": c.failed_items,
            "instance": self.instance_index,
            "items": c.items,
            "mini_batch": c.mini_batch,
            "rows": c.rows,
            "seconds": round(c.seconds, 6),
            "start": start,
        }


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def read_journal(settings: JobSettings) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Read ``job.json`` and every complete journal line, without locking (for status readers)."""
    state_dir = settings.state_dir
    try:
        job = json.loads((state_dir / "job.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None, []
    try:
        raw = (state_dir / "journal.jsonl").read_bytes()
    except FileNotFoundError:
        return job, []
    records = []
    for line in raw[: raw.rfind(b"\n") + 1].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return job, records
