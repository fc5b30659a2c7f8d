"""The CrossGuard side: validators with a collecting report_violation, and the real pack process over gRPC.

No Pulumi engine is needed: pulumi-policy's analyzer is a gRPC server. The last tests start the pack the way the
Pulumi CLI does (``python -m pulumi.policy ADDR policies/``) and speak its protocol to it (GetAnalyzerInfo,
Configure, Analyze, AnalyzeStack).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import policy_fixtures as fx
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from pulumi_policy.proxy import unknown_checking_proxy

from policies.enforcement import settings_for, settings_from_environ
from policies.rules import STACK_VALIDATORS, VALIDATORS
from policies.rules.endpoints import auth_enabled_validator, prod_private_validator
from policies.rules.pod_security import run_as_non_root_validator
from policies.rules.workloads import container_resources_validator, pdb_present_validator

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], None, [], None)  # type: ignore[arg-type]


def _args(token: str, obj: dict[str, Any], config: dict[str, Any] | None = None) -> ResourceValidationArgs:
    props = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}  # the token carries them
    return ResourceValidationArgs(
        token, unknown_checking_proxy(props), f"urn:pulumi:prod::ml::{token}::x", "x", _opts(), None, config
    )


class Collector:
    """A report_violation that records what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.calls.append((message, urn))


def test_validator_reports_per_container_message() -> None:
    obj = fx.deployment()
    fx.container(obj)["resources"]["limits"].pop("memory")
    report = Collector()
    container_resources_validator(_args(DEPLOYMENT, obj), report)
    assert report.calls == [('container "scorer" has no memory limit; set resources.limits.memory', None)]


def test_validator_ignores_other_types() -> None:
    obj = fx.deployment()
    fx.pod(obj)["securityContext"]["runAsUser"] = 0
    report = Collector()
    run_as_non_root_validator(_args("kubernetes:core/v1:ConfigMap", obj), report)
    assert report.calls == []


def test_validator_reads_environment_from_policy_config() -> None:
    route = fx.route(gateway="public")
    token = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
    dev, prod = Collector(), Collector()
    prod_private_validator(_args(token, route, {"environment": "dev"}), dev)
    prod_private_validator(_args(token, route, {"environment": "prod", "privateGateways": ["internal"]}), prod)
    assert dev.calls == []
    assert prod.calls == [
        (
            'HTTPRoute "cars" attaches to public Gateway "public"; prod endpoints must be private: set '
            'public_network_access: disabled so the route attaches to Gateway "internal"',
            None,
        )
    ]


def test_bad_environment_in_config_is_an_error() -> None:
    with pytest.raises(ValueError, match="policy config: environment: got 'qa'; expected one of dev, staging, prod"):
        auth_enabled_validator(_args(DEPLOYMENT, fx.deployment(), {"environment": "qa"}), Collector())


def test_stack_validator_reports_with_urn() -> None:
    objects = [o for o in fx.stack() if o["kind"] != "PodDisruptionBudget" or o["metadata"]["name"] != "cars-blue"]
    resources = []
    for i, obj in enumerate(objects):
        token = f"kubernetes:{'core/' if obj['apiVersion'] == 'v1' else ''}{obj['apiVersion']}:{obj['kind']}"
        props = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        resources.append(
            PolicyResource(token, unknown_checking_proxy(props), f"urn:{i}", f"r{i}", _opts(), None, None, [], {})
        )
    resources.append(PolicyResource("endpoints:online:OnlineEndpoint", {}, "urn:c", "c", _opts(), None, None, [], {}))
    report = Collector()
    pdb_present_validator(StackValidationArgs(resources, {"environment": "prod"}), report)
    assert report.calls == [
        ('Deployment "cars-blue" has no PodDisruptionBudget; add one selecting its pods with maxUnavailable 1', "urn:0")
    ]


def test_every_rule_has_a_validator() -> None:
    assert len(VALIDATORS) == 18
    assert set(STACK_VALIDATORS) == {"min-replicas-stack", "pdb-present", "default-deny-network-policy"}


@pytest.mark.parametrize(
    ("stack", "config", "expected"),
    [
        pytest.param("dev", {}, ("dev", "advisory"), id="dev"),
        pytest.param("staging", {}, ("staging", "mandatory"), id="staging"),
        pytest.param("acme/ml-endpoints/prod", {}, ("prod", "mandatory"), id="qualified-prod"),
        pytest.param("pr-42", {}, ("prod", "mandatory"), id="unknown-is-strict"),
        pytest.param("pr-42", {"ml-endpoints:environment": "dev"}, ("dev", "advisory"), id="config-environment"),
        pytest.param(
            "dev", {"ml-endpoints:policyEnforcement": "mandatory"}, ("dev", "mandatory"), id="config-enforcement"
        ),
    ],
)
def test_settings_for(stack: str, config: dict[str, str], expected: tuple[str, str]) -> None:
    settings = settings_for(stack, config)
    assert (settings.environment, settings.level) == expected


def test_settings_reject_unknown_level() -> None:
    with pytest.raises(ValueError, match="stack 'dev' config ml-endpoints:policyEnforcement: got 'strict'"):
        settings_for("dev", {"ml-endpoints:policyEnforcement": "strict"})


def test_settings_from_pulumi_environment() -> None:
    config = {"ml-endpoints:privateGateway": "internal", "ml-endpoints:poolLabel": "pool"}
    settings = settings_from_environ({"PULUMI_STACK": "staging", "PULUMI_CONFIG": json.dumps(config)})
    assert settings.policy_config() == {
        "environment": "staging",
        "privateGateways": ["internal"],
        "gpuPoolLabel": "pool",
    }


# --- the pack as the Pulumi CLI runs it ----------------------------------------------------------------------------


@pytest.fixture()
def pack(request: pytest.FixtureRequest) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    stack, config = request.param if isinstance(request.param, tuple) else (request.param, {})
    env = {
        **os.environ,
        "PULUMI_PROJECT": "ml-endpoints",
        "PULUMI_STACK": stack,
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": json.dumps(config),
    }
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        # Exactly how the CLI's pulumi-analyzer-policy-python starts a Python pack: the pulumi SDK's policy runner
        # with an engine address (unused by the pack) and the pack's folder, which it runs with runpy.
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(REPO / "policies")],
        cwd=REPO / "policies",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().decode().strip())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _struct(obj: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(obj)
    return s


def _configure_like_the_engine(stub: analyzer_pb2_grpc.AnalyzerStub) -> analyzer_pb2.AnalyzerInfo:
    info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for policy in info.policies:
        config = request.policyConfig[policy.name]
        config.enforcementLevel = policy.enforcementLevel
        config.properties.CopyFrom(info.initialConfig[policy.name].properties)
    stub.Configure(request, timeout=20)
    return info


@pytest.mark.parametrize("pack", ["prod"], indirect=True)
def test_pack_process_is_mandatory_in_prod(pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = _configure_like_the_engine(pack)
    assert info.name == "ml-endpoints"
    assert len(info.policies) == 21
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}
    assert json_format.MessageToDict(info.initialConfig["pinned-images"].properties) == {
        "environment": "prod",
        "privateGateways": ["gateway-system/private"],
        "gpuPoolLabel": "ml-endpoints.io/pool",
    }

    obj = fx.deployment()
    fx.container(obj)["image"] = "registry.example.com/cars/blue:1.4.2"
    props = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    response = pack.Analyze(
        analyzer_pb2.AnalyzeRequest(type=DEPLOYMENT, properties=_struct(props), urn="urn:d", name="d"), timeout=20
    )
    found = [(d.policyName, d.message.split("\n", 1)[1], d.enforcementLevel) for d in response.diagnostics]
    assert found == [
        (
            "pinned-images",
            'container "scorer" uses image "registry.example.com/cars/blue:1.4.2" without a digest; prod requires '
            "image@sha256:...",
            analyzer_pb2.MANDATORY,
        )
    ]

    resources = [
        analyzer_pb2.AnalyzerResource(type=DEPLOYMENT, properties=_struct(props), urn="urn:d", name="d"),
    ]
    stack_response = pack.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources), timeout=20)
    stack_found = sorted((d.policyName, d.urn) for d in stack_response.diagnostics)
    assert stack_found == [("default-deny-network-policy", "urn:d"), ("pdb-present", "urn:d")]


@pytest.mark.parametrize("pack", ["dev"], indirect=True)
def test_pack_process_is_advisory_in_dev(pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    _configure_like_the_engine(pack)
    obj = fx.deployment()
    obj["spec"]["replicas"] = 1
    props = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    response = pack.Analyze(
        analyzer_pb2.AnalyzeRequest(type=DEPLOYMENT, properties=_struct(props), urn="urn:d", name="d"), timeout=20
    )
    found = [(d.policyName, d.message.split("\n", 1)[1], d.enforcementLevel) for d in response.diagnostics]
    assert found == [
        (
            "min-replicas",
            'Deployment "cars-blue" runs 1 replica; set replicas (instance_count) to 2 or more',
            analyzer_pb2.ADVISORY,
        )
    ]


def _token(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"] if "/" in obj["apiVersion"] else f"core/{obj['apiVersion']}"
    return f"kubernetes:{api}:{obj['kind']}"


def _prod_config() -> dict[str, str]:
    """stacks/Pulumi.prod.yaml's config the way the Pulumi CLI passes it to plugins (PULUMI_CONFIG: strings)."""
    path = REPO / "stacks" / "Pulumi.prod.yaml"
    if not path.is_file():
        return {}
    config = yaml.safe_load(path.read_text(encoding="utf-8"))["config"]
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


@pytest.mark.parametrize("pack", [("prod", _prod_config())], indirect=True)
def test_pack_process_passes_the_prod_stack(pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """Every object of stacks/Pulumi.prod.yaml, as the Pulumi engine would hand it to the pack: no diagnostics."""
    from endpoints.app.plan import plan_stack

    _configure_like_the_engine(pack)
    objects = plan_stack(REPO, "prod").objects
    resources = []
    diagnostics = []
    for i, obj in enumerate(objects):
        props = _struct({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        request = analyzer_pb2.AnalyzeRequest(type=_token(obj), properties=props, urn=f"urn:{i}", name=f"r{i}")
        diagnostics += list(pack.Analyze(request, timeout=20).diagnostics)
        resources.append(
            analyzer_pb2.AnalyzerResource(type=_token(obj), properties=props, urn=f"urn:{i}", name=f"r{i}")
        )
    diagnostics += list(
        pack.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources), timeout=20).diagnostics
    )
    assert [(d.policyName, d.message) for d in diagnostics] == []


def test_unknown_env_value_does_not_abort_the_key_rule() -> None:
    """A value computed only at `pulumi up` (unknown in preview) must not stop the rule from reading names."""
    from pulumi.runtime.rpc import UNKNOWN

    from policies.rules.endpoints import keys_not_plain_validator

    obj = fx.deployment()
    fx.container(obj)["env"].append({"name": "ENDPOINTS_ENDPOINT_NAME", "value": UNKNOWN})
    fx.container(obj)["env"].append({"name": "STORAGE_TOKEN", "value": "t"})
    report = Collector()
    keys_not_plain_validator(_args(DEPLOYMENT, obj), report)
    assert report.calls == [
        (
            'container "scorer" sets STORAGE_TOKEN as a plain value; load it from a Secret (valueFrom.secretKeyRef or '
            "a mounted file)",
            None,
        )
    ]
