"""Benchmark this toolkit's inference server against its peers on one scikit-learn model, side by side.

Servers (same model, same prediction code where the server runs code; equal worker counts):

* ``ours``: ``python -m serving`` with ``bench/inference/score.py`` (production layer on, auth off);
* ``ours-core``: the same without the production layer (``--no-frontend``): the scoring server alone;
* ``ours-mlflow``: ``python -m serving`` with the MLflow model and no script;
* ``ours-batch``: ``ours`` with adaptive batching on and ``score_batch.py`` (``score.py`` plus ``run_batch``);
* ``ours-mlflow-batch``: ``ours-mlflow`` with adaptive batching on (no code);
* ``ours-mlflow-xgboost``, ``ours-mlflow-xgboost-batch``: the two above with an XGBoost classifier on the same data;
* ``mlserver``: MLServer with its scikit-learn runtime and adaptive batching (``max_batch_size``/``max_batch_time``);
* ``bentoml``: BentoML with the same predict code as a ``batchable`` API (adaptive batching);
* ``azmlinfsrv``: azureml-inference-server-http with the same ``score.py``;
* ``mlflow``: ``mlflow models serve --env-manager local`` with the MLflow model;
* ``kserve``: KServe ``ModelServer`` with a custom ``Model`` running the same predict code;
* ``kserve-batch``: the same behind KServe's agent with its batcher on (``--enable-batcher``, what KServe runs as a
  sidecar when an InferenceService sets ``batcher:``), built from the released Go module by ``setup_peers.sh``;
* ``bare``: a bare ASGI app doing the prediction inline under uvicorn (uvloop, httptools): the ceiling;
* ``const``: the same app answering from a cache keyed by the body (no prediction per request): the HTTP path alone,
  the physical limit of a Python server on this machine.

For each worker count and connection count: ``wrk`` on 127.0.0.1 for ``--duration`` seconds; requests/s, p50,
p99, non-2xx count, server CPU per request (user+system of the server's process tree / requests) and RSS (sum
over the tree after the run); plus the cold start: process start to the first correct answer.

Usage: bench/inference/run.sh [--duration 10] [--connections 1,8,64] [--workers 1,2] [--servers ours,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))  # bench/: benchlib
import benchlib  # noqa: E402
from benchlib import free_port  # noqa: E402

RESULTS = REPO / "bench" / "results"
PROJECT_PY = sys.executable
PEERS = {
    "azml": Path("/tmp/bench-azml"),
    "mlflow": Path("/tmp/bench-mlflow"),
    "kserve": Path("/tmp/bench-kserve"),
    "mlserver": Path("/tmp/bench-mlserver"),
    "bentoml": Path("/tmp/bench-bentoml"),
}
# KServe's batcher: the Go agent sidecar, built by setup_peers.sh (kserve-agent) from the released module.
KSERVE_AGENT = Path("/tmp/bench-kserve-agent/agent")
ROW = [5.1, 3.5, 1.4, 0.2]
ROWS = [ROW, [6.2, 2.9, 4.3, 1.3]]  # classes 0 and 1
BATCH_SIZE = 64  # the batching configurations: one batch can hold every connection's request
BATCH_WAIT_MS = 5
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Server:
    name: str
    argv: list[str]
    path: str
    body: dict
    expected: object  # the answer, or a function of the parsed answer returning True when it is right
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO
    note: str = ""
    stop_grace_s: float = 20  # SIGTERM, then SIGKILL after this long


@dataclass
class Result:
    server: str
    workers: int
    connections: int
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    socket_errors: str = ""
    cpu_us_per_request: float = 0.0
    rss_mib: float = 0.0
    cold_start_s: float = 0.0
    lone_before_p50_ms: float = 0.0  # 1 connection only: p50 of a lone client before the server saw any burst
    load1: float = 0.0  # the machine's 1-minute load average when the cell ended
    error: str = ""


def servers(workers: int, port: int, models: Path, rows: int = 1) -> dict[str, Server]:
    azure_dir, mlflow_dir = str(models / "azure"), str(models / "mlflow")
    payload = ROWS[:rows] if rows <= len(ROWS) else [ROWS[i % 2] for i in range(rows)]
    labels = [0 if row == ROW else 1 for row in payload]
    data_body = {"data": payload}
    mlflow_body = {"dataframe_split": {"columns": COLUMNS, "data": payload}}
    ours_env = {
        # Admission sized for the benchmark's 64 connections (the default, 1, answers 429 beyond 2 waiting).
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "64",
        "ENDPOINTS_RUN_THREADS": "1",
        "ENDPOINTS_REQUEST_TIMEOUT_MS": "60000",
        "ENDPOINTS_MAX_QUEUE_WAIT_MS": "60000",
    }
    batch_env = {
        **ours_env,
        "ENDPOINTS_MAX_BATCH_SIZE": str(BATCH_SIZE),
        "ENDPOINTS_MAX_BATCH_WAIT_MS": str(BATCH_WAIT_MS),
    }
    w = str(workers)
    mlserver_dir = models / f"mlserver-{port}"
    table = {
        "ours": Server(
            "ours",
            [
                PROJECT_PY,
                "-m",
                "serving",
                "--entry-script",
                str(HERE / "score.py"),
                "--model-dir",
                azure_dir,
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                w,
            ],
            "/score",
            data_body,
            labels,
            ours_env,
        ),
        "ours-core": Server(
            "ours-core",
            [
                PROJECT_PY,
                "-m",
                "serving",
                "--entry-script",
                str(HERE / "score.py"),
                "--model-dir",
                azure_dir,
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                w,
                "--no-frontend",
            ],
            "/score",
            data_body,
            labels,
            ours_env,
        ),
        "ours-mlflow": Server(
            "ours-mlflow",
            [
                PROJECT_PY,
                "-m",
                "serving",
                "--model-dir",
                mlflow_dir,
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                w,
            ],
            "/score",
            mlflow_body,
            {"predictions": labels},
            ours_env,
        ),
        "azmlinfsrv": Server(
            "azmlinfsrv",
            [
                str(PEERS["azml"] / "bin" / "azmlinfsrv"),
                "--entry_script",
                str(HERE / "score.py"),
                "--model_dir",
                azure_dir,
                "--port",
                str(port),
                "--worker_count",
                w,
            ],
            "/score",
            data_body,
            labels,
        ),
        "mlflow": Server(
            "mlflow",
            [
                str(PEERS["mlflow"] / "bin" / "mlflow"),
                "models",
                "serve",
                "-m",
                mlflow_dir,
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "--env-manager",
                "local",
                "-w",
                w,
            ],
            "/invocations",
            mlflow_body,
            {"predictions": labels},
        ),
        "kserve": Server(
            "kserve",
            [
                str(PEERS["kserve"] / "bin" / "python"),
                str(HERE / "kserve_model.py"),
                "--http_port",
                str(port),
                "--workers",
                w,
                "--model_dir",
                azure_dir,
                "--model_name",
                "model",
            ],
            "/v1/models/model:predict",
            {"instances": payload},
            {"predictions": labels},
        ),
        "kserve-batch": Server(
            "kserve-batch",
            [
                "bash",
                "-c",
                # The model server on a port of its own, the agent (the batcher) in front on the benchmark's port;
                # the agent replaces the shell, so the model server is its child: stopped and measured with it.
                '"$0" "$1" --http_port "$2" --workers "$3" --model_dir "$4" --model_name model & '
                'exec "$5" --port "$6" --component-port "$2" --enable-batcher --max-batchsize "$7" --max-latency "$8"',
                str(PEERS["kserve"] / "bin" / "python"),
                str(HERE / "kserve_model.py"),
                str(free_port()),
                w,
                azure_dir,
                str(KSERVE_AGENT),
                str(port),
                str(BATCH_SIZE),
                str(BATCH_WAIT_MS),
            ],
            "/v1/models/model:predict",
            {"instances": payload},
            # The agent answers {"message": "", "batchId": ..., "predictions": [...]}.
            lambda answer: answer.get("predictions") == labels,
            # The agent requires the variable (its readiness probe of the model server); empty: no probe.
            {"SERVING_READINESS_PROBE": ""},
            stop_grace_s=3,  # the agent sleeps 30 s after SIGTERM (Kubernetes propagation): not waited for here
        ),
        "ours-batch": Server(
            "ours-batch",
            [
                PROJECT_PY,
                "-m",
                "serving",
                "--entry-script",
                str(HERE / "score_batch.py"),
                "--model-dir",
                azure_dir,
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                w,
            ],
            "/score",
            data_body,
            labels,
            batch_env,
        ),
        "ours-mlflow-batch": Server(
            "ours-mlflow-batch",
            [
                PROJECT_PY,
                "-m",
                "serving",
                "--model-dir",
                mlflow_dir,
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                w,
            ],
            "/score",
            mlflow_body,
            {"predictions": labels},
            batch_env,
        ),
        "mlserver": Server(
            "mlserver",
            [str(PEERS["mlserver"] / "bin" / "mlserver"), "start", str(mlserver_dir)],
            "/v2/models/model/infer",
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [len(payload), 4],
                        "datatype": "FP64",
                        "data": [x for row in payload for x in row],
                    }
                ]
            },
            lambda answer: answer["outputs"][0]["data"] == labels,
            note=f"{mlserver_dir}:{azure_dir}:{workers}",
        ),
        "bentoml": Server(
            "bentoml",
            [
                str(PEERS["bentoml"] / "bin" / "bentoml"),
                "serve",
                "bento_service:Model",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--working-dir",
                str(HERE),
            ],
            "/predict",
            data_body,
            labels,
            {"BENCH_MODEL_DIR": azure_dir, "BENCH_MAX_BATCH": str(BATCH_SIZE)},
        ),
        "bare": Server(
            "bare",
            [
                PROJECT_PY,
                "-m",
                "uvicorn",
                "--factory",
                "--app-dir",
                str(HERE),
                "bare_app:create_app",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                w,
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            "/score",
            data_body,
            labels,
            {"BENCH_MODEL_DIR": azure_dir},
        ),
    }
    bare = table["bare"]
    table["const"] = Server(
        "const", bare.argv, bare.path, bare.body, bare.expected, {**bare.env, "BENCH_CONSTANT": "1"}
    )
    # The same configurations on an XGBoost classifier (model.py saves one when xgboost is installed).
    for name in ("ours-mlflow", "ours-mlflow-batch"):
        base = table[name]
        argv = [str(models / "mlflow-xgboost") if arg == mlflow_dir else arg for arg in base.argv]
        xgb = name.replace("ours-mlflow", "ours-mlflow-xgboost")
        table[xgb] = Server(xgb, argv, base.path, base.body, base.expected, base.env)
    return table


def post(url: str, body: bytes, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read()


def write_mlserver_settings(server: Server) -> None:
    """MLServer reads its settings from a folder: the server's ports and one model with adaptive batching on."""
    folder, model_dir, workers = server.note.rsplit(":", 2)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": int(server.env["BENCH_PORT"]),
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": int(workers),
                "debug": False,
            }
        )
    )
    (root / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "model",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(Path(model_dir) / "model.pkl")},
                "max_batch_size": BATCH_SIZE,
                "max_batch_time": BATCH_WAIT_MS / 1000,
            }
        )
    )


def start(server: Server, port: int, log: Path, timeout: float = 120) -> tuple[subprocess.Popen, float]:
    """Start the server; return it and the seconds from process start to the first correct answer."""
    if server.name == "mlserver":
        server.env["BENCH_PORT"] = str(port)
        write_mlserver_settings(server)
    if server.name == "kserve-batch" and not KSERVE_AGENT.exists():
        raise RuntimeError(f"{KSERVE_AGENT} is missing: bench/inference/setup_peers.sh kserve-agent builds it (Go)")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **server.env}
    # A peer's own helper commands (mlflow execs `uvicorn`) must come from its venv.
    env["PATH"] = f"{Path(server.argv[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("VIRTUAL_ENV", None)
    url = f"http://127.0.0.1:{port}{server.path}"
    body = json.dumps(server.body).encode()
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            server.argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=server.cwd, start_new_session=True
        )
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {proc.returncode}; see {log}")
        try:
            status, answer = post(url, body, timeout=1.0)
            parsed = json.loads(answer) if status == 200 else None
            if status == 200 and (server.expected(parsed) if callable(server.expected) else parsed == server.expected):
                cold = time.perf_counter() - started
                if server.name.startswith("ours"):
                    # Our workers accept connections (liveness) while init() runs: measure once all are ready.
                    wait_ready(f"http://127.0.0.1:{port}/ready", deadline)
                return proc, cold
        except (OSError, ValueError):
            pass
        # 50 ms between probes: a server that answers while it loads (ours: liveness and 503s during init())
        # would otherwise spend its loading time answering the prober.
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{server.name} gave no correct answer within {timeout} s; see {log}")


def wait_ready(url: str, deadline: float) -> None:
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not 200 in time")


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: the server and its workers
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def tree(root: int) -> list[int]:
    """The pids of ``root`` and its descendants (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    return sum(benchlib.cpu_seconds(pid) for pid in pids)


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total / 2**20


def run_wrk(url: str, body: dict, connections: int, duration: int, lua_dir: Path) -> dict:
    script = lua_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    output = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    report = benchlib.parse_wrk(output)
    return {
        "raw": output,
        "rps": report.rps,
        "requests": report.requests,
        "p50_ms": report.p50_ms,
        "p99_ms": report.p99_ms,
        "non_2xx": report.non_2xx,
        "socket_errors": report.socket_errors,
    }


def bench_server(
    name: str, workers: int, connections: list[int], duration: int, models: Path, work: Path, rows: int = 1
) -> list[Result]:
    port = free_port()
    server = servers(workers, port, models, rows)[name]
    log = work / f"{name}-w{workers}.log"
    results = []
    try:
        proc, cold = start(server, port, log)
    except (RuntimeError, OSError) as ex:
        return [Result(name, workers, c, error=str(ex)) for c in connections]
    try:
        url = f"http://127.0.0.1:{port}{server.path}"
        lone_before = 0.0
        if 1 in connections:  # a lone client before any burst: compared with the c=1 cell, which runs after bursts
            lone_before = run_wrk(url, server.body, 1, 3, work)["p50_ms"]
        run_wrk(url, server.body, max(connections), 2, work)  # warm-up, not recorded
        for c in connections:
            pids = tree(proc.pid)
            before = cpu_seconds(pids)
            try:
                wrk = run_wrk(url, server.body, c, duration, work)
            except (subprocess.SubprocessError, AttributeError) as ex:
                results.append(Result(name, workers, c, cold_start_s=cold, error=f"wrk failed: {ex}"))
                continue
            pids = tree(proc.pid)
            used = cpu_seconds(pids) - before
            results.append(
                Result(
                    name,
                    workers,
                    c,
                    rps=wrk["rps"],
                    p50_ms=wrk["p50_ms"],
                    p99_ms=wrk["p99_ms"],
                    requests=wrk["requests"],
                    non_2xx=wrk["non_2xx"],
                    socket_errors=wrk["socket_errors"],
                    cpu_us_per_request=used / max(1, wrk["requests"]) * 1e6,
                    rss_mib=rss_mib(pids),
                    cold_start_s=cold,
                    lone_before_p50_ms=lone_before if c == 1 else 0.0,
                    load1=os.getloadavg()[0],
                )
            )
            print(
                f"  {name:12} w={workers} c={c:<3} {wrk['rps']:9.0f} req/s  p50 {wrk['p50_ms']:7.2f} ms  "
                f"p99 {wrk['p99_ms']:7.2f} ms  non-2xx {wrk['non_2xx']}",
                flush=True,
            )
    finally:
        stop(proc, server.stop_grace_s)
    return results


def median_results(rounds: list[Result]) -> list[Result]:
    """One result per (server, workers, connections): the median of each measure over the rounds."""
    import statistics

    cells: dict[tuple[str, int, int], list[Result]] = {}
    for r in rounds:
        cells.setdefault((r.server, r.workers, r.connections), []).append(r)
    out = []
    for (server, workers, connections), group in cells.items():
        ok = [r for r in group if not r.error]
        if not ok:
            out.append(group[0])
            continue
        merged = Result(server, workers, connections)
        for name in (
            "rps",
            "p50_ms",
            "p99_ms",
            "cpu_us_per_request",
            "rss_mib",
            "cold_start_s",
            "lone_before_p50_ms",
            "load1",
        ):
            setattr(merged, name, statistics.median(getattr(r, name) for r in ok))
        merged.requests = sum(r.requests for r in ok)
        merged.non_2xx = sum(r.non_2xx for r in ok)
        merged.socket_errors = "; ".join(r.socket_errors for r in ok if r.socket_errors)
        out.append(merged)
    return out


def table(results: list[Result]) -> str:
    lines = [
        "| server | workers | conns | req/s | p50 ms | p99 ms | non-2xx | CPU us/req | RSS MiB | cold start s "
        "| lone p50 before burst ms | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.server} | {r.workers} | {r.connections} | error: {r.error} | | | | | | | | |")
            continue
        lines.append(
            f"| {r.server} | {r.workers} | {r.connections} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.non_2xx} | {r.cpu_us_per_request:.0f} | {r.rss_mib:.0f} | {r.cold_start_s:.2f} | "
            f"{f'{r.lone_before_p50_ms:.2f}' if r.lone_before_p50_ms else ''} | {r.load1:.1f} |"
        )
    return "\n".join(lines)


RATIOS = [
    ("ours-batch/azmlinfsrv", "ours-batch", "azmlinfsrv", "rps"),
    ("ours-batch/mlserver", "ours-batch", "mlserver", "rps"),
    ("ours-batch/bentoml", "ours-batch", "bentoml", "rps"),
    ("ours-batch/kserve", "ours-batch", "kserve", "rps"),
    ("ours-batch/kserve-batch", "ours-batch", "kserve-batch", "rps"),
    ("ours/azmlinfsrv", "ours", "azmlinfsrv", "rps"),
    ("ours/bare", "ours", "bare", "rps"),
    ("ours-mlflow/ours", "ours-mlflow", "ours", "rps"),
    ("ours-mlflow/mlflow", "ours-mlflow", "mlflow", "rps"),
    ("ours-mlflow-batch/mlflow", "ours-mlflow-batch", "mlflow", "rps"),
    ("ours-batch/const", "ours-batch", "const", "rps"),
    ("bare/const", "bare", "const", "rps"),
    ("cold ours/azmlinfsrv", "ours", "azmlinfsrv", "cold_start_s"),
]


def ratios(results: list[Result]) -> str:
    by = {(r.server, r.workers, r.connections): r for r in results if not r.error}
    present = {r.server for r in results if not r.error}
    chosen = [entry for entry in RATIOS if entry[1] in present and entry[2] in present]
    lines = [
        "| workers | conns | " + " | ".join(label for label, *_ in chosen) + " |",
        "|---:|---:|" + "---:|" * len(chosen),
    ]
    keys = sorted({(r.workers, r.connections) for r in results})

    def ratio(a: str, b: str, w: int, c: int, attr: str) -> str:
        x, y = by.get((a, w, c)), by.get((b, w, c))
        if not x or not y or not getattr(y, attr):
            return "n/a"
        return f"{getattr(x, attr) / getattr(y, attr):.2f}"

    for w, c in keys:
        cells = [ratio(a, b, w, c, attr) for _, a, b, attr in chosen]
        lines.append(f"| {w} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="64,8,1")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--servers", default="ours,ours-core,azmlinfsrv,kserve,mlflow,ours-mlflow,bare")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every server this many times (interleaved); "
        "the table shows each cell's median, which damps the noise of a shared machine",
    )
    parser.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    parser.add_argument("--out", default=str(RESULTS / "inference"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    connections = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    models = work / "models"
    subprocess.run([PROJECT_PY, str(HERE / "model.py"), str(models)], check=True)
    predict_us = float((models / "predict_us.txt").read_text())
    results: list[Result] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    rounds: list[Result] = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for round_ in range(args.rounds):
            for name in args.servers.split(","):
                print(f"{name} with {workers} worker(s), round {round_ + 1}/{args.rounds}", flush=True)
                rounds.extend(bench_server(name, workers, connections, args.duration, models, work, args.rows))
    results = median_results(rounds)
    load = os.getloadavg()
    meta = {
        "started": started,
        "command": "bench/inference/run.sh " + " ".join(sys.argv[1:]),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load_before:.2f} before and "
        f"{load[0]:.2f} after the run",
        "predict_us": predict_us,
        "duration_s": args.duration,
        "logs": str(work),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta["rounds"] = args.rounds
    out.with_suffix(".json").write_text(
        json.dumps(
            {"meta": meta, "results": [asdict(r) for r in results], "rounds": [asdict(r) for r in rounds]}, indent=2
        )
    )
    report = (
        f"# Inference server benchmark\n\nCommand: `{meta['command']}` (started {started}).\n\n"
        f"Machine: {meta['machine']}. The machine is shared with other work: absolute numbers are noisy; the "
        "ratios below compare servers measured one after another in the same run.\n\n"
        f"Model: scikit-learn LogisticRegression (4 features, 3 classes); `predict()` on one row alone costs "
        f"{predict_us:.0f} us here. Payload: {args.rows} row(s). wrk -t1, {args.duration} s per cell after a 2 s "
        "warm-up, "
        f"{args.rounds} interleaved round(s), median per cell (requests and non-2xx: totals), "
        "127.0.0.1; cold start probed every 50 ms. `ours` runs with the production layer on (auth none, "
        "access log on, admission limit 64); `ours-core` without it; "
        "every server runs its default logging.\n\n"
        f"{table(results)}\n\n## Ratios (requests/s; last column: cold start)\n\n{ratios(results)}\n"
    )
    out.with_suffix(".md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
