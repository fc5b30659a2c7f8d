"""Benchmark of the offline plan: 50 endpoints x 3 deployments rendered, schema-validated and policy-checked.

Run from the repository root:

    python bench/plan/bench_plan.py [--endpoints 50] [--deployments 3] [--repeat 3] [--write bench/results/plan.md]

It builds a throw-away Pulumi project (copies of the car-classifier example's code and models, one endpoint folder
per endpoint, one stack file pinning every image by digest), then measures:

1. the CLI end to end, in a fresh process (``endpoints plan --stack bench --json``): what a CI job pays;
2. in-process phases of ``plan_stack``: render (spec loading + builders), schema validation, policy rules;
3. schema validation per object with cached compiled validators (``components.k8s_schema.validate_object``) against
   ``kubernetes_validate.validate`` called afresh per object (the naive way), on the same objects in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "car-classifier"
INSTANCE_TYPES = ("Standard_DS3_v2", "Standard_F4s_v2", "Standard_NC4as_T4_v3")
TRAFFIC = (80, 20, 0)


def make_project(root: Path, endpoints: int, deployments: int) -> None:
    """Write Pulumi.yaml, shared code/models, ``endpoints`` endpoint folders and stacks/Pulumi.bench.yaml."""
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shared = root / "shared"
    shutil.copytree(EXAMPLE / "code", shared / "code")
    shutil.copytree(EXAMPLE / "models", shared / "models")
    shutil.copytree(EXAMPLE / "environment", shared / "environment")
    template = (EXAMPLE / "deployments" / "alice.yml").read_text(encoding="utf-8")
    overrides: dict[str, dict] = {}
    entries = []
    for e in range(endpoints):
        name = f"ep-{e:03d}"
        folder = root / "endpoints" / name
        (folder / "deployments").mkdir(parents=True)
        dep_names = [f"dep{d}" for d in range(deployments)]
        traffic = {n: (TRAFFIC[i] if i < len(TRAFFIC) else 0) for i, n in enumerate(dep_names)}
        if sum(traffic.values()) != 100:
            traffic = {n: (100 if i == 0 else 0) for i, n in enumerate(dep_names)}
        mirror = {dep_names[-1]: 10} if deployments > 2 else {}
        lines = [f"name: {name}", "auth_mode: key", "traffic:"] + [f"  {k}: {v}" for k, v in traffic.items()]
        if mirror:
            lines += ["mirror_traffic:"] + [f"  {k}: {v}" for k, v in mirror.items()]
        (folder / "endpoint.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        deps = {}
        for i, dep in enumerate(dep_names):
            text = (
                template.replace("name: alice", f"name: {dep}")
                .replace("endpoint_name: car-classifier", f"endpoint_name: {name}")
                .replace("../models/alice", "../../../shared/models/alice")
                .replace("../code", "../../../shared/code")
                .replace("../environment/", "../../../shared/environment/")
                .replace("instance_type: Standard_DS3_v2", f"instance_type: {INSTANCE_TYPES[i % len(INSTANCE_TYPES)]}")
            )
            (folder / "deployments" / f"{dep}.yml").write_text(text, encoding="utf-8")
            digest = f"{e:032x}{i:032x}"
            deps[dep] = {"image": f"registry.example.com/bench/{name}-{dep}@sha256:{digest}", "instanceCount": 3}
        overrides[name] = {"deployments": deps}
        entries.append(f"endpoints/{name}")
    config = {
        "ml-endpoints:namespace": "bench",
        "ml-endpoints:domain": "bench.example.com",
        "ml-endpoints:endpoints": entries,
        "ml-endpoints:publicNetworkAccess": "disabled",
        "ml-endpoints:policyEnforcement": "mandatory",
        "ml-endpoints:overrides": overrides,
    }
    (root / "stacks").mkdir()
    (root / "stacks" / "Pulumi.bench.yaml").write_text(json.dumps({"config": config}, indent=1), encoding="utf-8")


ENGINE_ONLY = (
    "import json, sys; from pathlib import Path; from endpoints.app.plan import plan_stack; "
    "p = plan_stack(Path(sys.argv[1]), 'bench'); print(json.dumps(p.summary()))"
)


def time_cli(root: Path, repeat: int, engine_only: bool = False) -> tuple[list[float], list[float], dict]:
    """Wall and CPU (user + sys, all its processes) seconds of ``endpoints plan --stack bench --json`` in fresh
    processes, and the last report. CPU time moves less with the machine's load than wall time does.

    With ``engine_only`` the fresh process imports only the plan engine (``endpoints.app.plan``), not every command of
    the CLI.
    """
    exe = Path(sys.executable).parent / "endpoints"
    command = (
        [sys.executable, "-c", ENGINE_ONLY, str(root)]
        if engine_only
        else [str(exe), "plan", "--stack", "bench", "--project", str(root), "--json"]
    )
    runs, cpu, report = [], [], {}
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        runs.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"plan failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        report = json.loads(proc.stdout)
    return runs, cpu, report


def time_phases(root: Path) -> dict[str, float]:
    """Seconds per phase of one in-process plan (after the CLI runs, so imports are warm but caches are not)."""
    from components.builders.stack import render_stack
    from components.builders.stack_config import load_stack_config, settings_from_config
    from components.k8s_schema import validate_object
    from endpoints.app.plan import _policy_context, validate_all
    from policies.rules import check_objects

    t0 = time.perf_counter()
    values = load_stack_config(root, "bench")
    settings = settings_from_config(values)
    objects = render_stack(settings, root).objects
    t1 = time.perf_counter()
    problems = validate_all(objects)  # what the plan runs: forked workers on multi-core machines
    t2 = time.perf_counter()
    ctx, _ = _policy_context("bench", values, settings.private_gateway, settings.pool_label)
    violations = check_objects(objects, ctx)
    t3 = time.perf_counter()
    assert not problems, problems[:3]
    assert not violations, violations[:3]
    t4 = time.perf_counter()
    serial = [m for o in objects for m in validate_object(o)]  # same objects, one process, validators now warm
    t5 = time.perf_counter()
    assert not serial
    return {
        "objects": len(objects),
        "render": t1 - t0,
        "validate": t2 - t1,
        "validate_serial_warm": t5 - t4,
        "policies": t3 - t2,
    }


def time_validation(root: Path, sample: int) -> dict[str, float]:
    """ms per object: cached validators vs kubernetes_validate.validate afresh, on the same core objects."""
    import kubernetes_validate

    from components.builders.stack import render_stack
    from components.builders.stack_config import load_stack_config, settings_from_config
    from components.k8s_schema import KUBERNETES_VERSION, validate_object

    objects = render_stack(settings_from_config(load_stack_config(root, "bench")), root).objects
    core = [o for o in objects if "gateway.networking" not in o["apiVersion"]][:sample]
    for o in core:  # warm the cache: the plan compiles each kind once per process
        validate_object(o)
    t0 = time.perf_counter()
    for o in core:
        validate_object(o)
    cached = (time.perf_counter() - t0) / len(core)
    t0 = time.perf_counter()
    for o in core:
        kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
    fresh = (time.perf_counter() - t0) / len(core)
    return {"sample": len(core), "cached_ms": cached * 1000, "fresh_ms": fresh * 1000}


def main() -> None:
    """Run the benchmark and print (or write) the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--deployments", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", type=int, default=60, help="objects in the per-object validation comparison")
    parser.add_argument("--write", type=Path, help="write the Markdown results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        root = Path(tmp)
        make_project(root, args.endpoints, args.deployments)
        cli_runs, cli_cpu, report = time_cli(root, args.repeat)
        engine_runs, engine_cpu, _ = time_cli(root, args.repeat, engine_only=True)
        phases = time_phases(root)
        per_object = time_validation(root, args.sample)
    load = os.getloadavg()
    kinds = ", ".join(f"{v} {k}" for k, v in report["objectsByKind"].items())
    lines = [
        "# Offline plan benchmark",
        "",
        f"Command: `python bench/plan/bench_plan.py --endpoints {args.endpoints} --deployments {args.deployments} "
        f"--repeat {args.repeat} --write bench/results/plan.md`",
        "",
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}; load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. "
        "The machine is shared with other work, so absolute times are noisy; the ratios below were measured side by "
        "side in the same run.",
        "",
        f"Workload: {args.endpoints} endpoints x {args.deployments} deployments (one GPU deployment per endpoint, "
        f"a mirror on each) = **{report['objects']} objects** ({kinds}); "
        f"schema problems {len(report['schemaProblems'])}, violations {report['violationsByLevel']}.",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| `endpoints plan --stack bench --json`, fresh process, wall (median of {args.repeat}) | "
        f"**{statistics.median(cli_runs):.2f} s** (runs: {', '.join(f'{r:.2f}' for r in cli_runs)}; target < 3 s) |",
        f"| the same runs: CPU time (user + sys, parent and forked workers), median | "
        f"{statistics.median(cli_cpu):.2f} s (runs: {', '.join(f'{r:.2f}' for r in cli_cpu)}) |",
        f"| fresh process importing only the plan engine (`plan_stack`), wall (median of {args.repeat}) | "
        f"**{statistics.median(engine_runs):.2f} s** (runs: {', '.join(f'{r:.2f}' for r in engine_runs)}) |",
        f"| the same runs: CPU time, median | {statistics.median(engine_cpu):.2f} s |",
        f"| in process: render + validate + policies (the three rows below) | "
        f"{phases['render'] + phases['validate'] + phases['policies']:.3f} s |",
        f"| in process: render (specs + builders) | {phases['render']:.3f} s |",
        f"| in process: schema validation of {phases['objects']} objects as the plan does it (compile each kind "
        f"once, then {min(os.cpu_count() or 1, 4)} forked workers) | {phases['validate']:.3f} s |",
        f"| in process: the same objects validated again in one process, validators already compiled | "
        f"{phases['validate_serial_warm']:.3f} s |",
        f"| in process: policy rules (18 object + 3 stack rules) | {phases['policies']:.3f} s |",
        f"| per object, cached validator (warm, {per_object['sample']} core objects) | "
        f"{per_object['cached_ms']:.2f} ms |",
        f"| per object, `kubernetes_validate.validate` afresh (same objects) | {per_object['fresh_ms']:.2f} ms |",
        f"| speed-up of caching per object | {per_object['fresh_ms'] / per_object['cached_ms']:.0f}x |",
        "",
        f"Validating all {phases['objects']} objects afresh would cost about "
        f"{per_object['fresh_ms'] * phases['objects'] / 1000:.1f} s on its own.",
        "",
    ]
    lines += [
        "The CLI row includes starting the `endpoints` command (which imports only the plan command's module); "
        "the engine-only row is the plan itself in a fresh process.",
        "",
    ]
    text = "\n".join(lines)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
