"""Cost of the production layer (key auth + admission): requests/s on vs off, same app, same run, wrk on 127.0.0.1.

The issue's measure is "requests/s with key auth on vs off in the same run". Three instances of the scoring server
(``python -m serving``, one worker, uvloop + httptools, a trivial ``run()``) are measured together:

* ``key``: the production layer with ``ENDPOINTS_AUTH_MODE=key`` (the deployed configuration);
* ``none``: the same layer with ``ENDPOINTS_AUTH_MODE=none``: "key auth off", everything else the same;
* ``bare``: ``--no-frontend``, no production layer at all (what the whole layer costs).

A pure-ASGI app answering a fixed prediction, alone and wrapped, shows the worst case (an app that costs nothing).
Admission is on with ``ENDPOINTS_MAX_CONCURRENT_REQUESTS`` equal to the connection count (every request takes and
returns a slot; none is rejected). Every request carries the ``Authorization`` header in every mode.

Side by side, at the same time: in each round every server of an app is loaded by its own wrk at once. On a machine
with two or more CPUs the servers share the last CPU (``taskset``) and the wrk processes the others, so the
scheduler gives each server the same CPU time in the same seconds: swings in the machine's speed (other tenants,
clock) hit every mode alike, and requests/s compare directly. Each server's CPU time per request, read from
``/proc``, is the second measure. Runs one after another on this shared 2-vCPU machine swung by +-20 % between
rounds; side by side, the rounds agree within a few per cent. The same run also measures the layer in-process (no
sockets, no load generator) for a noise-free breakdown.

Usage: ``python bench/frontend/run.py [--duration 3] [--connections 64] [--rounds 8] [--no-pin]``; writes
``bench/results/frontend.md`` and exits 1 when the key-auth target (under 10 % slower) is not met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # bench/: benchlib
import benchlib  # noqa: E402
from benchlib import cpu_seconds, free_port  # noqa: E402

KEY = "bench-" + "k" * 40
TARGET = 0.10  # key auth on at most 10 % slower than off
SCORE_SCRIPT = """
def init():
    pass


def run(raw_data):
    return {"predictions": [1, 0, 1]}
"""
BODY = b'{"data": [[1.0, 2.0, 3.0, 4.0]]}'
LUA = f"""wrk.method = "POST"
wrk.body = '{BODY.decode()}'
wrk.headers["Content-Type"] = "application/json"
"""
# (app, mode) in the order they are started; the first mode of each app is the reference for the others.
SERVERS = (("server", "none"), ("server", "key"), ("server", "bare"), ("asgi", "bare"), ("asgi", "key"))
LABELS = {
    ("server", "key"): "scoring server, layer with key auth",
    ("server", "none"): "scoring server, layer with auth none",
    ("server", "bare"): "scoring server, no layer (`--no-frontend`)",
    ("asgi", "key"): "bare ASGI app, layer with key auth",
    ("asgi", "bare"): "bare ASGI app, no layer",
}


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    cpu_us: float  # server CPU time (user + system, all threads) per request; 0 when unknown


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


def cpu_plan(pin: bool) -> tuple[list[str], list[str]]:
    """Command prefixes (server, load generator): the last allowed CPU for servers, the others for wrk."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2 or not shutil.which("taskset"):
        return [], []
    others = ",".join(str(c) for c in cpus[:-1])
    return ["taskset", "-c", str(cpus[-1])], ["taskset", "-c", others]


def parse_wrk(out: str, cpu_s: float) -> Result:
    """wrk's report, with ``cpu_s`` seconds of server CPU spread over the requests it completed."""
    r = benchlib.parse_wrk(out)
    return Result(r.rps, r.p50_ms, r.p99_ms, r.non_2xx, r.errors, cpu_s / r.requests * 1e6 if r.requests else 0.0)


def run_wrk_together(
    targets: dict[str, tuple[subprocess.Popen, int]], lua: Path, duration: int, connections: int, prefix: list[str]
) -> dict[str, Result]:
    """One wrk per server, all started at once for ``duration`` seconds; each server's result and CPU per request."""
    before = {name: cpu_seconds(proc.pid) for name, (proc, _) in targets.items()}
    runs = {}
    for name, (_, port) in targets.items():
        cmd = [
            *prefix,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(lua),
            "-H",
            f"Authorization: Bearer {KEY}",
            f"http://127.0.0.1:{port}/score",
        ]
        runs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {name: run.communicate(timeout=duration + 30) for name, run in runs.items()}
    after = {name: cpu_seconds(proc.pid) for name, (proc, _) in targets.items()}
    results = {}
    for name, (out, err) in outputs.items():
        if runs[name].returncode != 0:
            raise SystemExit(f"wrk failed against {name}: {err.strip()}")
        results[name] = parse_wrk(out, after[name] - before[name])
    return results


def start(app: str, mode: str, port: int, workdir: Path, connections: int, prefix: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENDPOINTS_", "PROMETHEUS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE)])
    if mode == "bare":
        env["ENDPOINTS_RUN_THREADS"] = str(connections)  # the same run() thread pool as with the layer
    else:
        env.update(
            {
                "ENDPOINTS_MAX_CONCURRENT_REQUESTS": str(connections),
                "ENDPOINTS_MAX_QUEUE_WAIT_MS": "500",
                "ENDPOINTS_REQUEST_TIMEOUT_MS": "5000",
                "ENDPOINTS_AUTH_MODE": mode,
            }
        )
        if mode == "key":
            env["ENDPOINTS_KEYS_DIR"] = str(workdir / "keys")
    log = open(workdir / f"{app}-{mode}.log", "ab")  # noqa: SIM115 (the child owns it)
    if app == "server":
        cmd = [
            sys.executable,
            "-m",
            "serving",
            "--entry-script",
            str(workdir / "score.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        if mode == "bare":
            cmd.append("--no-frontend")
        env.update({"AML_APP_ROOT": str(workdir), "AZUREML_LOG_LEVEL": "WARNING"})
    else:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "apps:" + ("bare" if mode == "bare" else "fronted"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    # taskset execs the server: the pid is the server's, and every thread it starts stays on that CPU.
    proc = subprocess.Popen([*prefix, *cmd], env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
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


# In-process: the layer driven by a plain loop of ASGI calls (no sockets, no HTTP parsing, no load generator).


@contextlib.contextmanager
def _layer_env(workdir: Path, mode: str, connections: int) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "ENDPOINTS_AUTH_MODE": mode,
            "ENDPOINTS_KEYS_DIR": str(workdir / "keys"),
            "ENDPOINTS_MAX_CONCURRENT_REQUESTS": str(connections),
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def in_process_costs(workdir: Path, connections: int, calls: int = 2000, repeats: int = 15) -> dict[str, float]:
    """Microseconds per request (best of ``repeats`` batches): the bare ASGI app alone and behind the layer with
    auth none and key; the key check alone (``parse_bearer`` + ``KeyAuthenticator.check_now``); admission alone
    (``Admission.try_acquire`` + ``release``, the path of every request that finds a free slot)."""
    sys.path[:0] = [str(REPO), str(HERE)]
    import apps

    from serving.frontend.admission import Admission
    from serving.frontend.auth import KeyAuthenticator, parse_bearer

    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {KEY}".encode()),
        (b"content-length", str(len(BODY)).encode()),
    ]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/score",
        "query_string": b"",
        "headers": headers,
    }
    request = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(_message: dict[str, Any]) -> None:
        return None

    async def per_call(app: Callable[..., Any]) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                await app(dict(scope), receive, send)
            best = min(best, time.perf_counter() - t0)
            await asyncio.sleep(0)  # lets the loop run its callbacks between batches, as a server's loop would
        return best / calls * 1e6

    async def measure() -> dict[str, float]:
        out = {"bare": await per_call(apps.bare())}
        for mode in ("none", "key"):
            with _layer_env(workdir, mode, connections):
                out[mode] = await per_call(apps.fronted())
        return out

    with contextlib.redirect_stderr(io.StringIO()):
        costs = asyncio.run(measure())
    checker = KeyAuthenticator(workdir / "keys")
    header = f"Bearer {KEY}".encode()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls * 10):
            checker.check_now(parse_bearer(header))  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - t0)
    costs["key check"] = best / (calls * 10) * 1e6
    admission = Admission(connections)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls * 10):
            admission.try_acquire()
            admission.release()
        best = min(best, time.perf_counter() - t0)
    costs["admission"] = best / (calls * 10) * 1e6
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per app (default 8)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers and wrk to CPUs")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "frontend.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    server_cpu, load_cpu = cpu_plan(args.pin)
    args.pinned = bool(server_cpu)
    workdir = Path(tempfile.mkdtemp(prefix="bench-frontend-"))
    (workdir / "keys").mkdir()
    (workdir / "keys" / "primary").write_text(KEY)
    (workdir / "keys" / "secondary").write_text("s" * 46)
    (workdir / "score.py").write_text(SCORE_SCRIPT)
    (workdir / "req.lua").write_text(LUA)
    results: dict[tuple[str, str], list[Result]] = {}
    args.load_before = os.getloadavg()[0]
    try:
        args.in_process = in_process_costs(workdir, args.connections)
        print("in-process us/request: " + ", ".join(f"{k} {v:.2f}" for k, v in args.in_process.items()), flush=True)
        for app in ("server", "asgi"):
            servers = {}
            for kind, mode in SERVERS:
                if kind != app:
                    continue
                port = free_port()
                proc = start(app, mode, port, workdir, args.connections, server_cpu)
                ready = "/" if mode == "bare" and app == "asgi" else "/ready"
                wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
                servers[mode] = (proc, port)
            try:
                run_wrk_together(servers, workdir / "req.lua", 2, args.connections, load_cpu)  # warm-up
                for _ in range(args.rounds):
                    # Every server of the app under load at once, sharing the server CPU: the machine's swings in
                    # speed (other tenants, frequency) hit all modes alike, within each round.
                    got = run_wrk_together(servers, workdir / "req.lua", args.duration, args.connections, load_cpu)
                    for mode, r in got.items():
                        results.setdefault((app, mode), []).append(r)
                    print(
                        f"{app:6} "
                        + " | ".join(
                            f"{mode} {r.rps:6.0f} req/s {r.cpu_us:6.1f} us CPU/req" for mode, r in got.items()
                        ),
                        flush=True,
                    )
            finally:
                for proc, _ in servers.values():
                    stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    slower = write_report(args, results)
    return 0 if slower < TARGET else 1


@dataclass
class Comparison:
    """``on`` against ``off``, each round's pair measured back to back."""

    off: list[Result]
    on: list[Result]

    @property
    def rps_ratio(self) -> float:
        # The median of the per-round ratios: each pair ran back to back, which cancels slow load drift.
        return statistics.median(b.rps / a.rps for a, b in zip(self.off, self.on, strict=True))

    @property
    def cpu_ratio(self) -> float:
        pairs = [(a.cpu_us, b.cpu_us) for a, b in zip(self.off, self.on, strict=True) if a.cpu_us and b.cpu_us]
        return statistics.median(b / a for a, b in pairs) if pairs else float("nan")

    def row(self, label: str) -> str:
        def med(rs: list[Result], f: Callable[[Result], float]) -> float:
            return statistics.median(f(r) for r in rs)

        return (
            f"| {label} | {med(self.off, lambda r: r.rps):,.0f} | {med(self.on, lambda r: r.rps):,.0f} "
            f"| **{self.rps_ratio:.1%}** "
            f"| {med(self.off, lambda r: r.cpu_us):.1f} | {med(self.on, lambda r: r.cpu_us):.1f} "
            f"| **{self.cpu_ratio:.2f}x** "
            f"| {med(self.off, lambda r: r.p50_ms):.2f} / {med(self.on, lambda r: r.p50_ms):.2f} "
            f"| {med(self.off, lambda r: r.p99_ms):.2f} / {med(self.on, lambda r: r.p99_ms):.2f} "
            f"| {sum(r.non_2xx + r.errors for r in self.off + self.on)} |"
        )


HEADER = (
    "| comparison (off → on) | off req/s | on req/s | on/off req/s | off CPU us/req | on CPU us/req | on/off CPU "
    "| p50 ms off / on | p99 ms off / on | non-2xx, errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def write_report(args: argparse.Namespace, results: dict[tuple[str, str], list[Result]]) -> float:
    """Write the Markdown report; return how much slower key auth makes the scoring server (0.05 = 5 %)."""
    auth = Comparison(results[("server", "none")], results[("server", "key")])
    layer = Comparison(results[("server", "bare")], results[("server", "key")])
    worst = Comparison(results[("asgi", "bare")], results[("asgi", "key")])
    # Slower by requests/s, or by CPU per request when pinned (the steadier of the two): the worse of both counts.
    slower = 1 - auth.rps_ratio
    if args.pinned and auth.cpu_ratio == auth.cpu_ratio:
        slower = max(slower, auth.cpu_ratio - 1)
    failed = sum(r.non_2xx + r.errors for r in auth.off + auth.on)
    if failed:
        slower = float("inf")  # a server answering 401s or dropping connections is fast for the wrong reason
    verdict = "met" if slower < TARGET else "NOT met"
    measure = "the worse of req/s and CPU per request" if args.pinned else "req/s; not pinned"
    summary = (
        f"Key auth makes the scoring server **{slower:.1%}** slower ({measure})."
        if not failed
        else f"**{failed} requests failed** (non-2xx or socket errors): no verdict on speed."
    )
    ip = args.in_process
    rounds = "\n".join(
        f"- {LABELS[key]}: " + ", ".join(f"{r.rps:,.0f} ({r.cpu_us:.0f} us)" for r in rs) for key, rs in results.items()
    )
    pinning = (
        "servers pinned to the last CPU and wrk to the others (`taskset`)"
        if args.pinned
        else "nothing pinned (`--no-pin`, one CPU, or no `taskset`): wrk and the servers share the CPUs"
    )
    command = (
        f"python bench/frontend/run.py --duration {args.duration} --connections {args.connections} "
        f"--rounds {args.rounds}{'' if args.pin else ' --no-pin'}"
    )
    text = f"""# Production layer cost: key auth + admission on vs off

Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on this machine ({os.cpu_count()} vCPU, shared with
other jobs; load average {args.load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end), {pinning}.
Side by side: in each of {args.rounds} rounds of {args.duration} s, every server of an app runs under its own wrk
at the same time (1 thread, {args.connections} connections each), sharing the server CPU, so each gets the same CPU
time in the same seconds and the machine's swings in speed hit all alike. Absolute req/s are therefore a share of
one CPU (about 1/3 for the scoring servers, 1/2 for the ASGI app); the ratios are the result.
One uvicorn worker per server (uvloop, httptools); POST /score with a small JSON body and an
`Authorization: Bearer` header on every request. Admission is on in every layer
(`ENDPOINTS_MAX_CONCURRENT_REQUESTS={args.connections}`: every request takes and returns a slot, none is rejected),
with the request deadline, body limit, request id, Prometheus metrics and the JSON access-log line.

Ratios are medians of the per-round ratios. "CPU us/req" is the server process's CPU time (user + system, all
threads, from `/proc`) divided by the requests wrk completed.

## Target (issue 4): key auth on vs off, same layer, same run: under {TARGET:.0%} slower — **{verdict}**

{summary} Admission runs in both; alone it is a
counter taken and given back per request ({ip["admission"]:.2f} us in-process, below), so key auth + admission
together stay within the target as well.

{HEADER}
{auth.row("scoring server: auth none → key auth")}

## What the whole layer costs (informational)

{HEADER}
{layer.row("scoring server: no layer → layer with key auth")}
{worst.row("bare ASGI app (costs nothing itself): no layer → layer with key auth")}

In-process (the layer called in a plain loop: no sockets, no HTTP parsing, no load generator; best of 15 batches):
the bare app {ip["bare"]:.2f} us per request; behind the layer with auth none {ip["none"]:.2f} us and with key auth
{ip["key"]:.2f} us; the key check alone (`parse_bearer` + `KeyAuthenticator.check_now`: one clock read, two
`hmac.compare_digest`) {ip["key check"]:.2f} us; admission alone (`try_acquire` + `release` with a free slot)
{ip["admission"]:.2f} us.

Per-round req/s (server CPU us per request):

{rounds}

Command:

```
{command}
```
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    print(f"key auth on vs off: {slower:.1%} slower; {failed} failed requests; target under {TARGET:.0%}: {verdict}")
    return slower


if __name__ == "__main__":
    sys.exit(main())
