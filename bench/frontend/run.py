"""Cost of the production layer (key auth + admission): requests/s on vs off, same app, same run, wrk on 127.0.0.1.

Two apps, each served by one uvicorn worker (uvloop + httptools), measured in alternating rounds so that load
from other processes hits both sides alike:

* ``scoring server``: ``python -m serving`` with a trivial scoring script, ``--no-frontend`` (off) vs the
  frontend with ``ENDPOINTS_AUTH_MODE=key`` (on) -- the deployed configuration.
* ``bare ASGI app``: a pure-ASGI app answering a fixed prediction (nearly free), alone (off) vs wrapped (on) --
  the worst case for the relative cost, since the app costs almost nothing.

Admission is on with ``ENDPOINTS_MAX_CONCURRENT_REQUESTS`` equal to the connection count (every request takes and
returns a slot; none is rejected). Every request carries the ``Authorization`` header in both modes.

Usage: ``python bench/frontend/run.py [--duration 4] [--connections 64] [--rounds 8]``; writes
``bench/results/frontend.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KEY = "bench-" + "k" * 40
SCORE_SCRIPT = """
def init():
    pass


def run(raw_data):
    return {"predictions": [1, 0, 1]}
"""
LUA = """wrk.method = "POST"
wrk.body = '{"data": [[1.0, 2.0, 3.0, 4.0]]}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} not ready within {timeout} s")


def parse_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, lua: Path, duration: int, connections: int) -> Result:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(lua),
           "-H", f"Authorization: Bearer {KEY}", url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = parse_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = parse_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Result(rps, p50, p99, int(non_2xx.group(1)) if non_2xx else 0,
                  sum(int(g) for g in errors.groups()) if errors else 0)  # fmt: skip


def start(kind: str, mode: str, port: int, workdir: Path, connections: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENDPOINTS_", "PROMETHEUS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE)])
    if mode in ("on", "noauth"):
        env.update({
            "ENDPOINTS_MAX_CONCURRENT_REQUESTS": str(connections),
            "ENDPOINTS_MAX_QUEUE_WAIT_MS": "500",
            "ENDPOINTS_REQUEST_TIMEOUT_MS": "5000",
        })  # fmt: skip
        if mode == "on":
            env.update({"ENDPOINTS_AUTH_MODE": "key", "ENDPOINTS_KEYS_DIR": str(workdir / "keys")})
        else:
            env["ENDPOINTS_AUTH_MODE"] = "none"  # the layer with everything but the key check
    else:
        env["ENDPOINTS_RUN_THREADS"] = str(connections)  # same run() thread pool as with the frontend
    log = open(workdir / f"{kind}-{mode}.log", "ab")  # noqa: SIM115 (the child owns it)
    if kind == "server":
        cmd = [sys.executable, "-m", "serving", "--entry-script", str(workdir / "score.py"), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
        if mode == "off":
            cmd.append("--no-frontend")
        env.update({"AML_APP_ROOT": str(workdir), "AZUREML_LOG_LEVEL": "WARNING"})
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "apps:" + ("fronted" if mode == "on" else "bare"),
               "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--rounds", type=int, default=8, help="alternating off/on rounds per app (default 2)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "frontend.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="bench-frontend-"))
    (workdir / "keys").mkdir()
    (workdir / "keys" / "primary").write_text(KEY)
    (workdir / "keys" / "secondary").write_text("s" * 46)
    (workdir / "score.py").write_text(SCORE_SCRIPT)
    (workdir / "req.lua").write_text(LUA)
    results: dict[tuple[str, str], list[Result]] = {}
    args.load_before = os.getloadavg()[0]
    try:
        for kind in ("server", "bare"):
            servers = {}
            # The scoring server also runs the layer with auth off: "key auth on vs off" in the words.
            for mode in ("off", "noauth", "on") if kind == "server" else ("off", "on"):
                port = free_port()
                proc = start(kind, mode, port, workdir, args.connections)
                ready = "/ready" if (kind == "server" or mode == "on") else "/"
                wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
                servers[mode] = (proc, port)
            try:
                for _proc, port in servers.values():  # warm-up
                    run_wrk(f"http://127.0.0.1:{port}/score", workdir / "req.lua", 2, args.connections)
                for round_index in range(args.rounds):
                    # Rotate which side goes first, so a drift in background load does not favour one side.
                    order = list(servers.items())
                    shift = round_index % len(order)
                    order = order[shift:] + order[:shift]
                    for mode, (_, port) in order:
                        r = run_wrk(f"http://127.0.0.1:{port}/score", workdir / "req.lua", args.duration,
                                    args.connections)  # fmt: skip
                        results.setdefault((kind, mode), []).append(r)
                        print(f"{kind:6} {mode:3} {r.rps:9.0f} req/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms "
                              f"non-2xx {r.non_2xx} errors {r.errors}", flush=True)  # fmt: skip
            finally:
                for proc, _ in servers.values():
                    stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_report(args, results)
    return 0


def write_report(args: argparse.Namespace, results: dict[tuple[str, str], list[Result]]) -> None:
    names = {"server": "scoring server (`python -m serving`, trivial `run()`)", "bare": "bare ASGI app (worst case)"}
    rows = []
    for kind in ("server", "bare"):
        off, on = results[(kind, "off")], results[(kind, "on")]
        off_rps = statistics.median(r.rps for r in off)
        on_rps = statistics.median(r.rps for r in on)
        # Each round's on/off pair ran back to back: the median of the pairwise ratios cancels slow load drift.
        ratio = statistics.median(b.rps / a.rps for a, b in zip(off, on, strict=True))
        best = max(r.rps for r in on) / max(r.rps for r in off)
        rows.append(
            f"| {names[kind]} | {off_rps:,.0f} | {on_rps:,.0f} | {ratio:.1%} | {best:.1%} "
            f"| {statistics.median(r.p50_ms for r in off):.2f} / {statistics.median(r.p50_ms for r in on):.2f} "
            f"| {statistics.median(r.p99_ms for r in off):.2f} / {statistics.median(r.p99_ms for r in on):.2f} "
            f"| {sum(r.non_2xx + r.errors for r in off + on)} |"
        )
    rounds = "; ".join(
        f"{kind} {mode}: " + ", ".join(f"{r.rps:,.0f}" for r in rs) for (kind, mode), rs in results.items()
    )
    on, noauth = results[("server", "on")], results[("server", "noauth")]
    auth_ratio = statistics.median(b.rps / a.rps for a, b in zip(noauth, on, strict=True))
    auth_best = max(r.rps for r in on) / max(r.rps for r in noauth)
    auth_row = (
        f"| scoring server, the layer with auth none | {statistics.median(r.rps for r in noauth):,.0f} "
        f"| {statistics.median(r.rps for r in on):,.0f} | {auth_ratio:.1%} | {auth_best:.1%} "
        f"| {statistics.median(r.p50_ms for r in noauth):.2f} / {statistics.median(r.p50_ms for r in on):.2f} "
        f"| {statistics.median(r.p99_ms for r in noauth):.2f} / {statistics.median(r.p99_ms for r in on):.2f} "
        f"| {sum(r.non_2xx + r.errors for r in noauth)} |"
    )
    text = f"""# Production layer cost: key auth + admission on vs off

Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on this machine ({os.cpu_count()} vCPU, shared with
other jobs, load average {args.load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end: absolute
numbers are noisy; the on/off ratio is measured side by side in the same run, alternating rounds).
One uvicorn worker per server (uvloop, httptools);
wrk 1 thread, {args.connections} connections,
{args.duration} s per run, {args.rounds} rounds per side (off and on back to back, the first side
alternating), POST /score with a small JSON body and an `Authorization: Bearer` header on every request.
"ratio" is the median of the per-round on/off ratios (each pair ran back to back, which cancels slow drift in
the background load); "best" compares the best run of each side.

"on" = `serving.frontend` with `ENDPOINTS_AUTH_MODE=key` (key files, constant-time compare, one stat a second for
rotation), admission with `ENDPOINTS_MAX_CONCURRENT_REQUESTS={args.connections}` (every request takes a slot; none
rejected), request deadline, body limit, request id, Prometheus metrics and the JSON access-log line.
"off" = the same app without the frontend (`python -m serving --no-frontend`; the bare app unwrapped).

| app | off req/s | on req/s | on/off ratio | on/off best | p50 ms off / on | p99 ms off / on | non-2xx, errors |
|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Key auth alone (the issue's "requests/s with key auth on vs off"): the same frontend, admission and everything else
on in both; "off" here is `ENDPOINTS_AUTH_MODE=none`, "on" the key check (same rounds, back to back):

| app | auth none req/s | key auth req/s | ratio | best | p50 ms none / key | p99 ms none / key | non-2xx, errors |
|---|---:|---:|---:|---:|---:|---:|---:|
{auth_row}

Target (issue 4): key auth + admission under 10 % slower on the scoring server.

Per-round req/s: {rounds}.

Command:

```
python bench/frontend/run.py --duration {args.duration} --connections {args.connections} --rounds {args.rounds}
```
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
