"""Router overhead: wrk against a deployment directly and through the local router, side by side, same run.

    python bench/router/run.py                 # writes bench/results/router.md
    python bench/router/run.py --duration 5    # shorter runs

Two upstreams, each a real serving process (``python -m serving``, one worker, auth off, admission limit
raised so that wrk's connections never meet a 429):
- ``echo``: a scoring script answering a constant (worst case for the router: the upstream costs nothing);
- ``alice``: the car-classifier example's scikit-learn deployment with its sample request (a real model).
For each upstream and connection count, direct and routed runs alternate (direct, routed) so that both see
the same machine load. Every run is bounded (``--duration`` seconds, default 10).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))  # benchlib
import benchlib  # noqa: E402
from benchlib import cpu_seconds, free_port  # noqa: E402

EXAMPLE = REPO / "examples" / "car-classifier"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready in {timeout} s")


def start_serving(name: str, script: Path, model_dir: Path | None, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "ENDPOINTS_AUTH_MODE": "none",
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "256",
        "ENDPOINTS_MAX_QUEUE_WAIT_MS": "5000",
        "AML_APP_ROOT": str(script.parent),
        "AZUREML_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "serving", "--entry-script", str(script), "--port", str(port), "--workers", "1"]
    if model_dir is not None:
        argv += ["--model-dir", str(model_dir)]
    proc = subprocess.Popen(argv, env=env, cwd=script.parent, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}/ready", proc)
    return proc, port


def start_router(name: str, upstream_port: int, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = {
        "table": {"endpoint": "bench", "deployments": [name], "traffic": {name: 100}, "mirror_traffic": {}},
        "upstreams": {name: f"http://127.0.0.1:{upstream_port}"},
        "timeouts_s": {name: 30},
    }
    path = tmp / f"routes-{name}.json"
    path.write_text(json.dumps(config))
    argv = [sys.executable, "-m", "endpoints.local.router", "--config", str(path), "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp / f"router-{name}.log").open("wb"))
    wait_ready(f"http://127.0.0.1:{port}/", proc)
    return proc, port


def wrk(url: str, body_file: Path, connections: int, duration: int, tmp: Path) -> dict[str, float]:
    lua = tmp / f"{body_file.stem}.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = io.open({json.dumps(str(body_file))}, 'rb'):read('*a')\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout

    report = benchlib.parse_wrk(out)
    return {
        "rps": report.rps,
        "p50": report.p50_ms,
        "p99": report.p99_ms,
        "non2xx": report.non_2xx,
        "socket_errors": f"Socket errors: {report.socket_errors}" if report.socket_errors else "",
    }


def summarize(pairs: list[dict[str, dict[str, float]]]) -> dict[str, float]:
    """Medians over the repetitions; the ratio is the median of per-pair ratios (each pair ran back to back)."""
    med = statistics.median
    return {
        "direct_rps": med(p["direct"]["rps"] for p in pairs),
        "routed_rps": med(p["routed"]["rps"] for p in pairs),
        "ratio": med(p["routed"]["rps"] / p["direct"]["rps"] for p in pairs),
        "direct_p50": med(p["direct"]["p50"] for p in pairs),
        "routed_p50": med(p["routed"]["p50"] for p in pairs),
        "added_p50": med(p["routed"]["p50"] - p["direct"]["p50"] for p in pairs),
        "direct_p99": med(p["direct"]["p99"] for p in pairs),
        "routed_p99": med(p["routed"]["p99"] for p in pairs),
        "serving_cpu_us": med(p["direct"]["cpu_us"] for p in pairs),
        "router_cpu_us": med(p["routed"]["cpu_us"] for p in pairs),
        "non2xx": sum(p["direct"]["non2xx"] + p["routed"]["non2xx"] for p in pairs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", default="1,8,64", help="comma-separated (default 1,8,64)")
    parser.add_argument("--repeat", type=int, default=3, help="direct/routed pairs per row, medians (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "router.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    conns = [int(c) for c in args.connections.split(",")]
    if not (EXAMPLE / "models" / "alice" / ".trained").exists():
        subprocess.run([sys.executable, str(EXAMPLE / "train.py")], check=True)

    load_start = os.getloadavg()
    rows = []
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        echo_body = tmp / "echo.json"
        echo_body.write_text('{"x": 1}')
        upstreams = [
            ("echo", Path(__file__).with_name("echo_score.py"), None, echo_body),
            (
                "alice",
                EXAMPLE / "code" / "score_alice.py",
                EXAMPLE / "models" / "alice",
                EXAMPLE / "samples" / "request.json",
            ),
        ]
        try:
            for name, script, model_dir, body in upstreams:
                serving, sport = start_serving(name, script, model_dir, tmp / f"{name}.log")
                procs.append(serving)
                router, rport = start_router(name, sport, tmp)
                procs.append(router)
                for url in (f"http://127.0.0.1:{sport}/score", f"http://127.0.0.1:{rport}/score"):
                    r = httpx.post(url, content=body.read_bytes(), headers={"Content-Type": "application/json"})
                    assert r.status_code == 200, (url, r.status_code, r.text)
                    wrk(url, body, 4, 1, tmp)  # warm-up: imports, connection pools, caches
                for c in conns:
                    pairs = []
                    for i in range(args.repeat):
                        # Alternate the order so that neither side always runs first after a load change.
                        order = ("direct", "routed") if i % 2 == 0 else ("routed", "direct")
                        result: dict[str, dict[str, float]] = {}
                        for side in order:
                            pid, port = (serving.pid, sport) if side == "direct" else (router.pid, rport)
                            cpu0 = cpu_seconds(pid)
                            result[side] = wrk(f"http://127.0.0.1:{port}/score", body, c, args.duration, tmp)
                            n = result[side]["rps"] * args.duration
                            result[side]["cpu_us"] = (cpu_seconds(pid) - cpu0) / max(n, 1) * 1e6
                        pairs.append(result)
                    row = summarize(pairs)
                    rows.append((name, c, row))
                    print(
                        f"{name} c={c}: direct {row['direct_rps']:.0f} req/s p50 {row['direct_p50']:.2f} ms | "
                        f"routed {row['routed_rps']:.0f} req/s p50 {row['routed_p50']:.2f} ms "
                        f"(ratio {row['ratio']:.0%}, router {row['router_cpu_us']:.0f} us CPU/req)",
                        flush=True,
                    )
                for p in (router, serving):
                    p.send_signal(signal.SIGTERM)
                    p.wait(40)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    load = os.getloadavg()
    lines = [
        "# Local router overhead",
        "",
        f"Command: `python bench/router/run.py --duration {args.duration} --connections {args.connections}"
        f" --repeat {args.repeat}`",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; "
        f"load average (1/5/15 min) at the start {load_start[0]:.1f} / {load_start[1]:.1f} / {load_start[2]:.1f}, "
        f"at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
        "Router: `endpoints/local/router.py` (asyncio Protocols on uvloop, httptools both ways, keep-alive pool).",
        "",
        "The machine is shared with other jobs (2 vCPUs): absolute numbers are noisy. Direct and routed runs of",
        "a row ran back to back in the same run; compare the ratio, not the absolute numbers across rows.",
        "wrk, the router, and the serving process all share the same 2 CPUs, so a routed request pays for a",
        "second Python process hop in CPU that the direct run does not: the echo rows are the worst case",
        "(an upstream that costs nothing), the alice rows show a real model (the car-classifier's scikit-learn",
        "deployment with its sample photo).",
        "",
        "Each row: the median of `--repeat` direct/routed pairs run back to back (order alternating). `router CPU`",
        "is the router process's own CPU time per request (user + system, from /proc) during the routed runs,",
        "`serving CPU` the serving process's during the direct runs: the least noisy measure of what the hop costs.",
        "",
        "| upstream | conns | direct req/s | routed req/s | routed/direct | direct p50 ms | routed p50 ms "
        "| added p50 ms | direct p99 ms | routed p99 ms | serving CPU us/req | router CPU us/req | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c, r in rows:
        lines.append(
            f"| {name} | {c} | {r['direct_rps']:.0f} | {r['routed_rps']:.0f} | {r['ratio']:.0%} | "
            f"{r['direct_p50']:.2f} | {r['routed_p50']:.2f} | {r['added_p50']:+.2f} | {r['direct_p99']:.2f} | "
            f"{r['routed_p99']:.2f} | {r['serving_cpu_us']:.0f} | {r['router_cpu_us']:.0f} | {r['non2xx']:.0f} |"
        )
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
