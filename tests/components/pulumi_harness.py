"""Run components and the whole Pulumi program in-process under ``pulumi.runtime.set_mocks``.

The mocks answer like the real providers would (per type token): the endpoint key provider returns a password, pulumi-docker
a pushed repository digest, pulumi-kubernetes the object with server-filled metadata and a status. Every
registration is recorded so tests can look at the exact inputs the engine would have received.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import runpy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.mocks as pulumi_mocks
import pulumi.runtime.settings as pulumi_settings
import yaml
from pulumi.runtime import rpc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "ml-endpoints"
# Every generated key/password starts with this, so tests can look for it anywhere it must not be.
SECRET_SENTINEL = "MOCKSECRET"
KEY_TYPE = "pulumi-python:dynamic:Resource"


def mock_password(name: str) -> str:
    """The key the key provider mock returns for resource ``name`` (deterministic, alphanumeric)."""
    return SECRET_SENTINEL + hashlib.sha256(name.encode()).hexdigest()[:38]


def _k8s_state(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    state = dict(args.inputs)
    meta = dict(state.get("metadata") or {})
    meta.update(
        {
            "uid": f"uid-{hashlib.sha256(args.name.encode()).hexdigest()[:12]}",
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": "2026-11-23T12:00:00Z",
        }
    )
    state["metadata"] = meta
    kind = state.get("kind")
    if kind == "Deployment":
        replicas = (state.get("spec") or {}).get("replicas", 1)
        state["status"] = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    elif kind == "Service":
        state["spec"] = {**state["spec"], "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}
    elif kind == "HTTPRoute":
        state["status"] = {
            "parents": [
                {
                    "parentRef": state["spec"]["parentRefs"][0],
                    "controllerName": "example.com/gateway-controller",
                    "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
                }
            ]
        }
    return state


def mock_state(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    """Realistic provider outputs for one registration, by type token."""
    typ = args.typ
    if typ == KEY_TYPE:  # components.endpoint_keys.EndpointKey (a dynamic resource)
        return {**args.inputs, "result": mock_password(args.name)}
    if typ == "docker:index/image:Image":
        name = args.inputs["imageName"]
        digest = hashlib.sha256(json.dumps(args.inputs, sort_keys=True, default=str).encode()).hexdigest()
        return {**args.inputs, "repoDigest": f"{name.rsplit(':', 1)[0]}@sha256:{digest}", "platform": "linux/amd64"}
    if typ.startswith("kubernetes:"):
        return _k8s_state(args)
    return dict(args.inputs)


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that record every registered resource."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", mock_state(args)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass
class Run:
    """What one in-process run registered and exported."""

    resources: list[pulumi.runtime.MockResourceArgs]
    exports: dict[str, Any] = field(default_factory=dict)
    export_secret: dict[str, bool] = field(default_factory=dict)

    def urn(self, r: pulumi.runtime.MockResourceArgs) -> str:
        """A URN-like label of a registration for assertion messages."""
        return f"urn:pulumi:test::{PROJECT}::{r.typ}::{r.name}"

    def by_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        """Registrations of one type token."""
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        """The registration of one resource name."""
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, got {[self.urn(r) for r in found]}"
        return found[0]


def _config_value(value: Any) -> str:
    # The engine hands every config value to the program as a string; objects and arrays as JSON.
    return value if isinstance(value, str) else json.dumps(value)


def stack_config(stack: str) -> dict[str, Any]:
    """The ``ml-endpoints:`` keys of ``stacks/Pulumi.<stack>.yaml`` (prefix stripped)."""
    doc = yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return {k.split(":", 1)[1]: v for k, v in doc["config"].items() if k.startswith(f"{PROJECT}:")}


@contextlib.contextmanager
def _owned_event_loops() -> Iterator[None]:
    """Give the run its own event loops and close them all afterwards.

    Pulumi's mock monitor creates an event loop in every executor thread it runs in and never closes it; left to
    the garbage collector, each one raises ``ResourceWarning: unclosed event loop`` in whatever test runs then.
    """
    created: list[asyncio.AbstractEventLoop] = []
    original = pulumi_mocks._ensure_event_loop

    def ensure_event_loop() -> asyncio.AbstractEventLoop:
        try:
            return asyncio.get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            created.append(loop)
            return loop

    main_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(main_loop)
    pulumi_mocks._ensure_event_loop = ensure_event_loop
    try:
        yield
    finally:
        pulumi_mocks._ensure_event_loop = original
        main_loop.run_until_complete(main_loop.shutdown_default_executor())
        for loop in created:
            loop.close()
        main_loop.close()
        asyncio.set_event_loop(None)


def run_pulumi(fn: Callable[[], Any], config: dict[str, Any] | None = None, stack: str = "test") -> Run:
    """Run ``fn`` (which creates resources) under fresh mocks with the given ``ml-endpoints:`` config.

    ``fn`` may return an Output (e.g. ``Output.all(...).apply(check)``); it is awaited, so a failing assertion
    inside ``apply`` fails the run. The run happens on its own thread: Pulumi's settings (context variables) and
    event loops live and die there, leaving the test process's main thread as it was for other tests.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["run"] = _run_pulumi_here(fn, config, stack)
        except BaseException as e:  # handed to the caller's thread below
            outcome["error"] = e

    thread = threading.Thread(target=target, name=f"pulumi-{stack}")
    thread.start()
    thread.join(timeout=300)
    if thread.is_alive():
        raise TimeoutError(f"pulumi run of stack {stack!r} did not finish within 300 s")
    if "error" in outcome:
        raise outcome["error"]
    result: Run = outcome["run"]
    return result


def _run_pulumi_here(fn: Callable[[], Any], config: dict[str, Any] | None, stack: str) -> Run:
    mocks = RecordingMocks()
    pulumi.runtime.set_all_config({f"{PROJECT}:{k}": _config_value(v) for k, v in (config or {}).items()})
    run = Run(mocks.resources)

    @pulumi.runtime.test
    def body() -> Any:
        checks = fn()  # assertions a test runs inside Output.apply(...) come back here and are awaited
        root = pulumi_settings.get_root_resource()
        outputs: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
        names = sorted(outputs)
        outs = [pulumi.Output.from_input(outputs[n]) for n in names]

        async def secrets() -> list[bool]:
            return [await o.is_secret() for o in outs]

        def collect(values: list[Any]) -> None:
            run.exports.update(dict(zip(names, values, strict=True)))

        flags = pulumi.Output.from_input(asyncio.ensure_future(secrets()))
        return pulumi.Output.all(
            checks,
            pulumi.Output.all(*outs).apply(collect),
            flags.apply(lambda fl: run.export_secret.update(dict(zip(names, fl, strict=True)))),
        )

    with _owned_event_loops():
        pulumi_settings.ROOT.set(None)  # a fresh root stack per run: exports do not leak between runs
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
        body()
    return run


def run_program(stack: str, config: dict[str, Any] | None = None) -> Run:
    """Run ``stacks/__main__.py``'s ``main()`` for a stack's config (``config`` replaces keys of the stack file)."""
    values = stack_config(stack)
    values.update(config or {})
    program = runpy.run_path(str(REPO_ROOT / "stacks" / "__main__.py"))  # run_name != "__main__": main() not run
    return run_pulumi(program["main"], values, stack)


def strip_secrets(value: Any) -> Any:
    """Replace secret-wrapped values (as the engine would store them encrypted) by ``"[secret]"``.

    A secret mapping keeps its keys (``stringData: {primary: "[secret]", ...}``) so the object still validates.
    """
    if rpc.is_rpc_secret(value):
        inner = value["value"]
        return {k: "[secret]" for k in inner} if isinstance(inner, dict) else "[secret]"
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def plain_strings(value: Any) -> list[str]:
    """Every string outside secret-wrapped values."""
    value = strip_secrets(value)
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                out.append(str(k))
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return out


def as_object(r: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    """The Kubernetes object a kubernetes:* registration sends (secrets replaced by placeholders)."""
    return strip_secrets(r.inputs)
