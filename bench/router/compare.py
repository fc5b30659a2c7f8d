"""Router CPU per request: this tree's router against an earlier commit's, side by side in one run.

    python bench/router/compare.py --baseline a437b9c     # the ASGI router under uvicorn (before issue 5's rework)

Both routers front the same echo serving process (the cheapest upstream, so the router's own cost shows);
for each connection count wrk runs against one router then the other, alternating the order every repeat, and
each run records the router process's CPU time per request (user + system, /proc). The baseline's
``endpoints/local/router*.py`` and ``upstream.py`` are taken from git into a temporary package, so nothing in the
working tree changes. Prints a Markdown table; every run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    """``bench/router/run.py``'s helpers (wrk, serving process, CPU time), imported when run, not at import."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run

    return run


def baseline_package(commit: str, root: Path) -> Path:
    """Write the baseline router as package ``baseline_router`` under ``root``; returns ``root``.

    Its modules are the commit's ``endpoints/local/router*.py`` and ``upstream.py`` (one file or several, as the
    router was split at that commit); imports between them are redirected into the package, the rest (routing,
    metrics' registry, the contract) come from this tree.
    """
    pkg = root / "baseline_router"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", commit, "endpoints/local/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = [Path(p).name for p in listing if re.fullmatch(r"endpoints/local/(router\w*|upstream)\.py", p)]
    modules = "|".join(re.escape(Path(n).stem) for n in names)
    for name in names:
        source = subprocess.run(
            ["git", "show", f"{commit}:endpoints/local/{name}"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        source = re.sub(rf"\bfrom endpoints\.local\.({modules}) import", r"from baseline_router.\1 import", source)
        (pkg / name).write_text(source)
    return root


def start(
    bench: ModuleType, module: str, upstream_port: int, tmp: Path, pythonpath: str
) -> tuple[subprocess.Popen, int]:
    port = bench.free_port()
    config = {
        "table": {"endpoint": "bench", "deployments": ["echo"], "traffic": {"echo": 100}, "mirror_traffic": {}},
        "upstreams": {"echo": f"http://127.0.0.1:{upstream_port}"},
        "timeouts_s": {"echo": 30},
    }
    path = tmp / f"routes-{module}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    argv = [sys.executable, "-m", module, "--config", str(path), "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_ready(f"http://127.0.0.1:{port}/", proc)
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git commit of the router to compare with")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", default="1,8", help="comma-separated (default 1,8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per router and row, medians (default 3)")
    args = parser.parse_args()
    bench = _bench()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        body = tmp / "echo.json"
        body.write_text('{"x": 1}')
        pythonpath = os.pathsep.join([str(baseline_package(args.baseline, tmp)), str(REPO)])
        try:
            script = Path(__file__).with_name("echo_score.py")
            serving, sport = bench.start_serving("echo", script, None, tmp / "echo.log")
            procs.append(serving)
            routers = {}
            for label, module in (("baseline", "baseline_router.router"), ("current", "endpoints.local.router")):
                proc, port = start(bench, module, sport, tmp, pythonpath)
                procs.append(proc)
                routers[label] = (proc, port)
                bench.wrk(f"http://127.0.0.1:{port}/score", body, 4, 1, tmp)  # warm-up
            load = os.getloadavg()
            print(f"baseline {args.baseline} vs this tree; load average at the start {load[0]:.1f} / {load[1]:.1f}")
            print("| conns | baseline us/req | current us/req | baseline req/s | current req/s |")
            print("|---:|---:|---:|---:|---:|")
            for c in (int(x) for x in args.connections.split(",")):
                runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "current": []}
                for i in range(args.repeat):
                    order = ("baseline", "current") if i % 2 == 0 else ("current", "baseline")
                    for label in order:
                        proc, port = routers[label]
                        cpu0 = bench.cpu_seconds(proc.pid)
                        result = bench.wrk(f"http://127.0.0.1:{port}/score", body, c, args.duration, tmp)
                        n = max(result["rps"] * args.duration, 1)
                        runs[label].append(((bench.cpu_seconds(proc.pid) - cpu0) / n * 1e6, result["rps"]))
                med = {
                    k: (statistics.median(u for u, _ in v), statistics.median(r for _, r in v)) for k, v in runs.items()
                }
                print(
                    f"| {c} | {med['baseline'][0]:.0f} | {med['current'][0]:.0f} | {med['baseline'][1]:.0f} "
                    f"| {med['current'][1]:.0f} |",
                    flush=True,
                )
            load = os.getloadavg()
            print(f"load average at the end {load[0]:.1f} / {load[1]:.1f}")
        finally:
            for p in procs:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
