"""Batch runner benchmark: files/s on N small files, against a sequential loop and a multiprocessing.Pool.

One command, every contender on the same files and the same scoring function (bench/batch/score_bench.py),
each as a whole process timed from the outside (interpreter start included), interleaved over ``--rounds``
rounds so that load from other processes hits all of them alike; medians are reported:

    python bench/batch/bench_batch.py --files 10000 --workers 2 --mini-batch-size 10 100 --rounds 3 \\
        --out bench/results/batch.md

* sequential: ``run()`` on each mini-batch in one process, rows appended to a file (bench/batch/baselines.py).
* pool: ``multiprocessing.Pool(workers).imap_unordered(run, mini_batches)``, rows appended by the parent: no
  checkpoint, no retries, no timeouts, not restartable.
* runner: ``python -m serving.batch.runner`` with ``max_concurrency_per_instance = workers``: worker processes,
  per-mini-batch timeout and retries, and every mini-batch committed to the journal (exactly-once; fsync at
  most once a second and at the end).

Per-mini-batch overhead = (runner - pool) / mini-batches, from the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def make_files(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = random.Random(42)
    for i in range(n):
        (folder / f"f{i:06d}.csv").write_text(",".join(f"{rng.uniform(-1, 1):.5f}" for _ in range(64)))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stderr}")
    return wall


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mini-batch-size", type=int, nargs="+", default=[10])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write the markdown table here (and print it)")
    ap.add_argument("--tmp", type=Path, help="folder for files and outputs (default: a temp folder)")
    args = ap.parse_args()

    py = sys.executable
    root = Path(tempfile.mkdtemp(prefix="batch-bench-", dir=args.tmp))
    results = []
    try:
        make_files(root / "in", args.files)
        for size in args.mini_batch_size:
            times: dict[str, list[float]] = {"sequential": [], "pool": [], "runner": []}
            scoring: list[float] = []
            for r in range(args.rounds):
                base = [py, str(HERE / "baselines.py")]
                common = ["--input", str(root / "in"), "--mini-batch-size", str(size)]
                times["sequential"].append(timed([*base, "sequential", *common, "--out", str(root / "seq.csv")]))
                times["pool"].append(timed([*base, "pool", *common, "--workers", str(args.workers),
                                            "--out", str(root / "pool.csv")]))  # fmt: skip
                out = root / f"runner-{size}-{r}"
                times["runner"].append(timed([
                    py, "-m", "serving.batch.runner", "--input", str(root / "in"), "--output-dir", str(out),
                    "--entry-script", str(HERE / "score_bench.py"), "--mini-batch-size", str(size),
                    "--max-concurrency-per-instance", str(args.workers), "--job-id", "bench",
                    "--logging-level", "warning",
                ]))  # fmt: skip
                summary = json.loads((out / "predictions.summary.json").read_text())
                scoring.append(summary["timings"]["elapsed_seconds"])
                assert count_lines(out / "predictions.csv") == args.files == count_lines(root / "pool.csv")
                shutil.rmtree(out)
            n_mb = -(-args.files // size)
            med = {k: statistics.median(v) for k, v in times.items()}
            results.append({"size": size, "mini_batches": n_mb, "median": med, "all": times,
                            "runner_scoring": statistics.median(scoring),
                            "overhead_ms": (med["runner"] - med["pool"]) / n_mb * 1000})  # fmt: skip
            print(json.dumps(results[-1]), file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    n = args.files
    load = os.getloadavg()
    lines = [
        f"`{' '.join(['python', 'bench/batch/bench_batch.py', *sys.argv[1:]])}`",
        "",
        f"{n} small CSV files (64 floats each, ~0.1 ms of scoring per file); workers = Pool processes = "
        f"max_concurrency_per_instance = {args.workers}; median of {args.rounds} interleaved rounds; each contender "
        f"a whole process (interpreter start included). Machine: {os.cpu_count()} CPUs shared with other jobs "
        f"(load average at the end {load[0]:.1f}), Python {platform.python_version()}.",
        "",
        "| mini_batch_size | mini-batches | sequential files/s | Pool files/s | runner files/s | runner / Pool "
        "| overhead per mini-batch vs Pool | runner scoring-only files/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r["median"]
        lines.append(
            f"| {r['size']} | {r['mini_batches']} | {n / m['sequential']:.0f} | {n / m['pool']:.0f} "
            f"| {n / m['runner']:.0f} | {m['pool'] / m['runner']:.2f} | {r['overhead_ms']:+.2f} ms "
            f"| {n / r['runner_scoring']:.0f} |"
        )
    lines += ["", "Raw wall times (s), per round:", ""]
    for r in results:
        raw = "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)}" for k, v in r["all"].items())
        lines.append(f"- mini_batch_size {r['size']}: {raw}")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
