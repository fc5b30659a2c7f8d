"""The serving process of two commits side by side (key auth on, trivial ``run()``): is a change within noise?

    python bench/frontend/compare_commits.py --before 54b9d31^1 --after 54b9d31 --connections 64 --rounds 4

Each commit's ``serving/`` is taken with ``git archive`` into a temporary folder and started from there
(``PYTHONPATH``), one worker each; both share one pinned CPU and run under their own wrk at the same time, as
``bench/frontend/run.py`` does, so swings of the shared machine hit both alike. Prints each round and the medians of
the paired after/before ratios of requests/s and server CPU per request. Bounded: ``rounds`` x ``duration`` seconds
after a 2 s warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import run as fr  # noqa: E402 (bench/frontend/run.py: servers, wrk side by side, CPU per request)
from benchlib import free_port  # noqa: E402


def _extract(commit: str, dest: Path) -> None:
    archive = subprocess.run(["git", "archive", commit, "serving"], cwd=fr.REPO, capture_output=True, check=True)
    dest.mkdir(parents=True)
    tar = dest / "serving.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as f:
        f.extractall(dest, filter="data")
    tar.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git commit of the baseline")
    parser.add_argument("--after", required=True, help="git commit to compare with it")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=3, help="seconds per round (default 3)")
    args = parser.parse_args()
    server_cpu, load_cpu = fr.cpu_plan(True)
    with tempfile.TemporaryDirectory(prefix="compare-commits-") as tmp:
        root, work = Path(tmp), Path(tmp) / "work"
        (work / "keys").mkdir(parents=True)
        (work / "score.py").write_text(fr.SCORE_SCRIPT)
        (work / "keys" / "primary").write_text(fr.KEY)
        (work / "keys" / "secondary").write_text("s" * 46)
        (work / "req.lua").write_text(fr.LUA)
        procs: dict[str, tuple[subprocess.Popen, int]] = {}
        try:
            for name, commit in (("before", args.before), ("after", args.after)):
                _extract(commit, root / name)
                env = {k: v for k, v in os.environ.items() if not k.startswith(("ENDPOINTS_", "PROMETHEUS_"))}
                env.update(
                    {
                        "PYTHONPATH": str(root / name),
                        "ENDPOINTS_AUTH_MODE": "key",
                        "ENDPOINTS_KEYS_DIR": str(work / "keys"),
                        "ENDPOINTS_MAX_QUEUE_WAIT_MS": "500",
                        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": str(args.connections),
                        "ENDPOINTS_REQUEST_TIMEOUT_MS": "5000",
                        "AML_APP_ROOT": str(work),
                        "AZUREML_LOG_LEVEL": "WARNING",
                    }
                )
                port = free_port()
                with open(work / f"{name}.log", "ab") as log:
                    proc = subprocess.Popen(
                        [
                            *server_cpu,
                            sys.executable,
                            "-m",
                            "serving",
                            "--entry-script",
                            str(work / "score.py"),
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "--workers",
                            "1",
                        ],
                        env=env,
                        cwd=str(root / name),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                procs[name] = (proc, port)
            for proc, port in procs.values():
                fr.wait_ready(f"http://127.0.0.1:{port}", proc, timeout=120)
            fr.run_wrk_together(procs, work / "req.lua", 2, args.connections, load_cpu)  # warm-up
            results: dict[str, list[fr.Result]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                got = fr.run_wrk_together(procs, work / "req.lua", args.duration, args.connections, load_cpu)
                for name, result in got.items():
                    results[name].append(result)
                print({n: f"{r.rps:.0f} req/s, {r.cpu_us:.0f} CPU us/req, {r.non_2xx} non-2xx" for n, r in got.items()})
        finally:
            for proc, _ in procs.values():
                fr.stop(proc)
    pairs = list(zip(results["after"], results["before"], strict=True))
    rps = statistics.median(a.rps / b.rps for a, b in pairs)
    cpu = statistics.median(a.cpu_us / b.cpu_us for a, b in pairs)
    print(
        f"{args.after} / {args.before}, {args.connections} connections, {args.rounds} rounds of {args.duration} s: "
        f"req/s {rps:.3f}, CPU us/req {cpu:.3f} (medians of paired ratios); load {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
