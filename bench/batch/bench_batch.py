"""Batch runner benchmark: files/s on N small files, against a sequential loop and a multiprocessing.Pool.

One command, one run, every contender on the same files and the same scoring function
(bench/batch/score_bench.py), side by side:

    python bench/batch/bench_batch.py --files 10000 --workers 2 --mini-batch-size 10 --out bench/results/batch.md

* sequential: ``run()`` on each mini-batch in this process, rows appended to a file.
* pool: ``multiprocessing.Pool(workers).imap(run, mini_batches)``, rows appended by the parent (no checkpoint,
  no retries, no timeouts).
* runner: ``python -m serving.batch.runner`` with ``max_concurrency_per_instance = workers`` - worker processes,
  per-mini-batch timeout, retries, and the fsync'd journal commit of every mini-batch (exactly-once).

Per-mini-batch overhead = (runner wall - pool wall) / mini-batches. The runner's wall includes starting the
interpreter and listing the input; its own "scoring" time (first to last commit, from the summary) is given too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import score_bench  # noqa: E402


def make_files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True)
    rng = random.Random(42)
    for i in range(n):
        values = ",".join(f"{rng.uniform(-1, 1):.5f}" for _ in range(64))
        (folder / f"f{i:06d}.csv").write_text(values)
    return sorted(str(p) for p in folder.iterdir())


def chunks(files: list[str], size: int) -> list[list[str]]:
    return [files[i : i + size] for i in range(0, len(files), size)]


def sequential(batches: list[list[str]], out: Path) -> float:
    t0 = time.perf_counter()
    score_bench.init()
    with open(out, "w") as f:
        for b in batches:
            f.write("\n".join(score_bench.run(b)) + "\n")
    return time.perf_counter() - t0


def _pool_init() -> None:
    score_bench.init()


def pool(batches: list[list[str]], out: Path, workers: int) -> float:
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(workers, initializer=_pool_init) as p, open(out, "w") as f:
        for rows in p.imap_unordered(score_bench.run, batches):
            f.write("\n".join(rows) + "\n")
    return time.perf_counter() - t0


def runner(inputs: Path, out_dir: Path, workers: int, size: int) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "serving.batch.runner", "--input", str(inputs), "--output-dir", str(out_dir),
           "--entry-script", str(HERE / "score_bench.py"), "--mini-batch-size", str(size),
           "--max-concurrency-per-instance", str(workers), "--job-id", "bench", "--logging-level", "warning"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"runner failed ({proc.returncode}):\n{proc.stderr}")
    summary = json.loads((out_dir / "predictions.summary.json").read_text())
    return wall, summary


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mini-batch-size", type=int, nargs="+", default=[10])
    ap.add_argument("--out", type=Path, help="write a markdown table here (and print it)")
    ap.add_argument("--tmp", type=Path, help="folder for files and outputs (default: a temp folder)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="batch-bench-", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        files = make_files(root / "in", args.files)
        print(f"made {len(files)} files in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        rows = []
        for size in args.mini_batch_size:
            batches = chunks(files, size)
            seq = sequential(batches, root / f"seq-{size}.csv")
            pl = pool(batches, root / f"pool-{size}.csv", args.workers)
            rn, summary = runner(root / "in", root / f"runner-{size}", args.workers, size)
            n_rows = count_lines(root / f"runner-{size}" / "predictions.csv")
            assert n_rows == len(files) == count_lines(root / f"pool-{size}.csv"), (n_rows, len(files))
            rows.append({
                "mini_batch_size": size, "mini_batches": len(batches), "sequential_s": seq, "pool_s": pl,
                "runner_s": rn, "runner_scoring_s": summary["timings"]["elapsed_seconds"],
                "overhead_ms_per_mb": (rn - pl) / len(batches) * 1000,
            })  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    n = args.files
    lines = [
        f"Files: {n} small CSV files (64 floats each); workers (Pool processes = max_concurrency_per_instance): "
        f"{args.workers}; machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}.",
        "",
        "| mini_batch_size | sequential files/s | Pool files/s | runner files/s | runner / Pool | runner scoring-only "
        "files/s | overhead per mini-batch vs Pool |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mini_batch_size']} | {n / r['sequential_s']:.0f} | {n / r['pool_s']:.0f} | {n / r['runner_s']:.0f} "
            f"| {r['pool_s'] / r['runner_s']:.2f} | {n / r['runner_scoring_s']:.0f} | {r['overhead_ms_per_mb']:.2f} ms |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
