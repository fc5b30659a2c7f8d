"""The two baselines of the batch benchmark, each a whole process like the runner (interpreter start included).

python bench/batch/baselines.py sequential --input DIR --mini-batch-size 10 --out FILE
python bench/batch/baselines.py pool --workers 2 --input DIR --mini-batch-size 10 --out FILE
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import score_bench


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["sequential", "pool"])
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mini-batch-size", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    files = sorted(os.path.join(args.input, f) for f in os.listdir(args.input))
    batches = [files[i : i + args.mini_batch_size] for i in range(0, len(files), args.mini_batch_size)]
    with open(args.out, "w") as out:
        if args.mode == "sequential":
            score_bench.init()
            for b in batches:
                out.write("\n".join(score_bench.run(b)) + "\n")
        else:
            with mp.get_context("fork").Pool(args.workers, initializer=score_bench.init) as pool:
                for rows in pool.imap_unordered(score_bench.run, batches):
                    out.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
