"""Every rule: the allowed stack passes; each disallowed fixture yields exactly its messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import policy_fixtures as fx
import pytest

from policies.rules import check_objects
from policies.rules.common import Context, Violation, type_token
from policies.rules.workloads import split_image

PROD = Context(environment="prod")
DEV = Context(environment="dev")

Mutator = Callable[[list[dict[str, Any]]], None]


def _found(objects: list[dict[str, Any]], ctx: Context) -> list[tuple[str, str]]:
    return [(v.policy, v.message) for v in check_objects(objects, ctx)]


def _first(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def test_allowed_stack_passes_in_prod() -> None:
    assert _found(fx.stack(), PROD) == []


def test_allowed_stack_passes_in_dev() -> None:
    assert _found(fx.stack(), DEV) == []


def _c(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return fx.container(objects[0])


def _p(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return fx.pod(objects[0])


CASES = [
    # --- pod security ---
    pytest.param(
        lambda s: _p(s)["securityContext"].pop("runAsNonRoot"),
        PROD,
        [("run-as-non-root", 'container "scorer" may run as root; set securityContext.runAsNonRoot: true')],
        id="run-as-non-root-missing",
    ),
    pytest.param(
        lambda s: _p(s)["securityContext"].update(runAsUser=1000),
        PROD,
        [("run-as-non-root", 'container "scorer" runs as uid 1000; set securityContext.runAsUser to 10000 or above')],
        id="uid-below-10000",
    ),
    pytest.param(
        lambda s: _p(s)["securityContext"].pop("runAsUser"),
        PROD,
        [("run-as-non-root", 'container "scorer" sets no uid; set securityContext.runAsUser to 10000 or above')],
        id="uid-missing",
    ),
    pytest.param(
        lambda s: (
            _p(s)["securityContext"].update(runAsUser=0),
            _c(s).setdefault("securityContext", {}).update(runAsUser=20000),
        ),
        PROD,
        [],
        id="container-uid-overrides-pod",
    ),
    pytest.param(
        lambda s: _c(s)["securityContext"].update(readOnlyRootFilesystem=False),
        PROD,
        [
            (
                "read-only-root-filesystem",
                'container "scorer" has a writable root filesystem; set securityContext.readOnlyRootFilesystem: true '
                "and mount an emptyDir at /tmp",
            )
        ],
        id="writable-root",
    ),
    pytest.param(
        lambda s: _c(s)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
        PROD,
        [
            (
                "drop-all-capabilities",
                'container "scorer" does not drop ALL capabilities; set securityContext.capabilities.drop: ["ALL"]',
            )
        ],
        id="no-drop-all",
    ),
    pytest.param(
        lambda s: _c(s)["securityContext"]["capabilities"].update(add=["NET_BIND_SERVICE", "SYS_ADMIN", "NET_RAW"]),
        PROD,
        [
            (
                "drop-all-capabilities",
                'container "scorer" adds capabilities SYS_ADMIN, NET_RAW; remove them from '
                "securityContext.capabilities.add",
            )
        ],
        id="adds-capabilities",
    ),
    pytest.param(
        lambda s: _p(s)["securityContext"].pop("seccompProfile"),
        PROD,
        [
            (
                "seccomp-runtime-default",
                'container "scorer" has no seccomp profile; set securityContext.seccompProfile.type: RuntimeDefault',
            )
        ],
        id="no-seccomp",
    ),
    pytest.param(
        lambda s: _c(s)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        PROD,
        [
            (
                "seccomp-runtime-default",
                'container "scorer" uses seccomp profile Unconfined; set securityContext.seccompProfile.type: '
                "RuntimeDefault",
            )
        ],
        id="seccomp-unconfined",
    ),
    pytest.param(
        lambda s: _c(s)["securityContext"].pop("allowPrivilegeEscalation"),
        PROD,
        [
            (
                "no-privilege-escalation",
                'container "scorer" allows privilege escalation; set securityContext.allowPrivilegeEscalation: false',
            )
        ],
        id="privilege-escalation",
    ),
    pytest.param(
        lambda s: _c(s)["securityContext"].update(privileged=True),
        PROD,
        [("no-privilege-escalation", 'container "scorer" is privileged; remove securityContext.privileged')],
        id="privileged",
    ),
    pytest.param(
        lambda s: _p(s).update(hostNetwork=True, hostPID=True),
        PROD,
        [
            ("no-host-access", 'Deployment "cars-blue" uses the host network; remove hostNetwork'),
            ("no-host-access", 'Deployment "cars-blue" uses the host PID namespace; remove hostPID'),
        ],
        id="host-namespaces",
    ),
    pytest.param(
        lambda s: _p(s)["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}),
        PROD,
        [
            (
                "no-host-access",
                'volume "docker" mounts hostPath /var/run/docker.sock; use an emptyDir, a PersistentVolumeClaim or a '
                "projected volume",
            )
        ],
        id="host-path",
    ),
    pytest.param(
        lambda s: _c(s).update(ports=[{"containerPort": 5001, "hostPort": 8080}]),
        PROD,
        [("no-host-access", 'container "scorer" binds host port 8080; remove ports[].hostPort')],
        id="host-port",
    ),
    # --- workloads ---
    pytest.param(
        lambda s: _c(s)["resources"]["limits"].pop("memory"),
        PROD,
        [("container-resources", 'container "scorer" has no memory limit; set resources.limits.memory')],
        id="no-memory-limit",
    ),
    pytest.param(
        lambda s: _c(s).pop("resources"),
        PROD,
        [
            ("container-resources", 'container "scorer" has no CPU request; set resources.requests.cpu'),
            ("container-resources", 'container "scorer" has no CPU limit; set resources.limits.cpu'),
            ("container-resources", 'container "scorer" has no memory request; set resources.requests.memory'),
            ("container-resources", 'container "scorer" has no memory limit; set resources.limits.memory'),
        ],
        id="no-resources",
    ),
    pytest.param(
        lambda s: fx.container(s[1])["resources"]["limits"].pop("nvidia.com/gpu"),
        PROD,
        [
            (
                "container-resources",
                'container "scorer" requests 1 nvidia.com/gpu without a limit; set resources.limits."nvidia.com/gpu" '
                "to 1",
            )
        ],
        id="gpu-request-without-limit",
    ),
    pytest.param(
        lambda s: fx.container(s[1])["resources"]["limits"].update({"nvidia.com/gpu": "2"}),
        PROD,
        [
            (
                "container-resources",
                'container "scorer" requests 1 nvidia.com/gpu but limits 2; set resources.limits."nvidia.com/gpu" '
                "equal to the request",
            )
        ],
        id="gpu-request-limit-differ",
    ),
    pytest.param(
        lambda s: _c(s).pop("readinessProbe"),
        PROD,
        [("distinct-probes", 'container "scorer" has no readiness probe; set readinessProbe (GET /ready)')],
        id="no-readiness",
    ),
    pytest.param(
        lambda s: _c(s).pop("livenessProbe"),
        PROD,
        [("distinct-probes", 'container "scorer" has no liveness probe; set livenessProbe (GET /)')],
        id="no-liveness",
    ),
    pytest.param(
        lambda s: _c(s).update(livenessProbe={"httpGet": {"path": "/ready", "port": 5001}, "periodSeconds": 30}),
        PROD,
        [
            (
                "distinct-probes",
                'container "scorer" uses the same check for readiness and liveness; point livenessProbe at a check '
                "that does not depend on the model (GET /)",
            )
        ],
        id="same-probes",
    ),
    pytest.param(
        lambda s: _c(s).update(image="registry.example.com/cars/blue:latest"),
        DEV,
        [
            (
                "pinned-images",
                'container "scorer" uses image "registry.example.com/cars/blue:latest"; pin a version tag or a '
                "digest (image@sha256:...)",
            )
        ],
        id="latest-tag",
    ),
    pytest.param(
        lambda s: _c(s).update(image="localhost:5000/cars"),
        DEV,
        [
            (
                "pinned-images",
                'container "scorer" uses untagged image "localhost:5000/cars"; pin a version tag or a digest '
                "(image@sha256:...)",
            )
        ],
        id="untagged-with-registry-port",
    ),
    pytest.param(
        lambda s: _c(s).update(image="registry.example.com/cars/blue:1.4.2"),
        DEV,
        [],
        id="tag-allowed-in-dev",
    ),
    pytest.param(
        lambda s: _c(s).update(image="registry.example.com/cars/blue:1.4.2"),
        PROD,
        [
            (
                "pinned-images",
                'container "scorer" uses image "registry.example.com/cars/blue:1.4.2" without a digest; prod '
                "requires image@sha256:...",
            )
        ],
        id="digest-required-in-prod",
    ),
    pytest.param(
        lambda s: s[0]["spec"].update(replicas=2),
        PROD,
        [("min-replicas", 'Deployment "cars-blue" runs 2 replicas; set replicas (instance_count) to 3 or more')],
        id="two-replicas-in-prod",
    ),
    pytest.param(
        lambda s: s[0]["spec"].update(replicas=2),
        DEV,
        [],
        id="two-replicas-in-dev",
    ),
    pytest.param(
        lambda s: s[0]["spec"].update(replicas=1),
        DEV,
        [("min-replicas", 'Deployment "cars-blue" runs 1 replica; set replicas (instance_count) to 2 or more')],
        id="one-replica-in-dev",
    ),
    pytest.param(
        lambda s: _first(s, "HorizontalPodAutoscaler")["spec"].pop("minReplicas"),
        PROD,
        [("min-replicas", 'HorizontalPodAutoscaler "cars-blue" allows 1 replicas; set minReplicas to 3 or more')],
        id="hpa-default-min",
    ),
    pytest.param(
        lambda s: s.append(fx.scaled_object("cars-gpu", min_count=None)),
        PROD,
        [("min-replicas", 'ScaledObject "cars-gpu" allows 0 replicas; set minReplicaCount to 3 or more')],
        id="scaledobject-scale-to-zero",
    ),
    pytest.param(
        lambda s: s[1]["spec"].pop("replicas"),
        PROD,
        [
            (
                "min-replicas-stack",
                'Deployment "cars-gpu" sets no replicas and no autoscaler targets it; set replicas to 3 or more',
            )
        ],
        id="no-replicas-no-scaler",
    ),
    pytest.param(
        lambda s: s[0]["spec"].pop("replicas"),
        PROD,
        [],
        id="no-replicas-with-hpa",
    ),
    pytest.param(
        lambda s: _first(s, "PodDisruptionBudget")["spec"].update(maxUnavailable=0),
        PROD,
        [
            (
                "pdb-allows-eviction",
                'PodDisruptionBudget "cars-blue" sets maxUnavailable 0, which blocks every eviction; set '
                "maxUnavailable to 1",
            )
        ],
        id="pdb-max-unavailable-zero",
    ),
    pytest.param(
        lambda s: s[3]["spec"].update(minAvailable="100%"),
        PROD,
        [
            (
                "pdb-allows-eviction",
                'PodDisruptionBudget "cars-gpu" sets minAvailable 100%, which blocks every eviction; set '
                "maxUnavailable to 1",
            )
        ],
        id="pdb-min-available-all-percent",
    ),
    pytest.param(
        lambda s: s[3]["spec"].update(minAvailable=3),
        PROD,
        [
            (
                "pdb-present",
                'PodDisruptionBudget "cars-gpu" requires 3 of the 3 replicas of Deployment "cars-gpu" available, '
                "which blocks every eviction; set maxUnavailable to 1",
            )
        ],
        id="pdb-min-available-equals-replicas",
    ),
    pytest.param(
        lambda s: s.remove(_first(s, "PodDisruptionBudget")),
        PROD,
        [
            (
                "pdb-present",
                'Deployment "cars-blue" has no PodDisruptionBudget; add one selecting its pods with maxUnavailable 1',
            )
        ],
        id="pdb-missing",
    ),
    pytest.param(
        lambda s: _first(s, "Service")["spec"].update(type="LoadBalancer"),
        PROD,
        [
            (
                "no-node-port-or-load-balancer",
                'Service "cars-blue" is type LoadBalancer; use ClusterIP and expose it through the Gateway',
            )
        ],
        id="load-balancer",
    ),
    pytest.param(
        lambda s: _first(s, "Service")["spec"].update(type="NodePort"),
        PROD,
        [
            (
                "no-node-port-or-load-balancer",
                'Service "cars-blue" is type NodePort; use ClusterIP and expose it through the Gateway',
            )
        ],
        id="node-port",
    ),
    pytest.param(
        lambda s: _first(s, "NetworkPolicy")["spec"].update(ingress=[{"from": [{"podSelector": {}}]}]),
        PROD,
        [
            (
                "default-deny-network-policy",
                'namespace "ml" has no default-deny NetworkPolicy; add one with podSelector: {}, policyTypes: '
                "[Ingress] and no ingress rules",
            )
        ],
        id="network-policy-allows-ingress",
    ),
    # --- endpoints ---
    pytest.param(
        lambda s: _c(s)["env"][0].update(value="none"),
        PROD,
        [
            (
                "auth-enabled",
                'container "scorer" disables auth (ENDPOINTS_AUTH_MODE=none); set it to key, aml_token or aad_token',
            )
        ],
        id="auth-none",
    ),
    pytest.param(
        lambda s: _c(s)["env"].pop(0),
        PROD,
        [
            (
                "auth-enabled",
                'container "scorer" has no ENDPOINTS_AUTH_MODE, so auth defaults to none; set it to key, aml_token '
                "or aad_token",
            )
        ],
        id="auth-missing",
    ),
    pytest.param(
        lambda s: s.__setitem__(7, fx.route({"cars-blue": 90, "cars-gpu": 20})),
        PROD,
        [
            (
                "traffic-sums-to-100",
                'HTTPRoute "cars" splits live traffic cars-blue=90 + cars-gpu=20 = 110; live traffic must sum to 0 or '
                "100",
            )
        ],
        id="traffic-110",
    ),
    pytest.param(
        lambda s: s.__setitem__(7, fx.route({"cars-blue": 0, "cars-gpu": 0})),
        PROD,
        [],
        id="traffic-zero-allowed",
    ),
    pytest.param(
        lambda s: s.__setitem__(
            7, fx.route({"cars-blue": 100, "cars-gpu": 0}, mirror={"backendRef": {"name": "cars-gpu"}, "percent": 60})
        ),
        PROD,
        [
            (
                "mirror-limits",
                'HTTPRoute "cars" mirrors 60% of traffic to "cars-gpu"; mirror at most 50% (mirror_traffic)',
            )
        ],
        id="mirror-60",
    ),
    pytest.param(
        lambda s: s.__setitem__(
            7,
            fx.route(
                {"cars-blue": 100, "cars-gpu": 0},
                mirror={"backendRef": {"name": "cars-gpu"}, "fraction": {"numerator": 1, "denominator": 2}},
            ),
        ),
        PROD,
        [],
        id="mirror-fraction-half-allowed",
    ),
    pytest.param(
        lambda s: s.__setitem__(
            7, fx.route({"cars-blue": 80, "cars-gpu": 20}, mirror={"backendRef": {"name": "cars-gpu"}, "percent": 10})
        ),
        PROD,
        [
            (
                "mirror-limits",
                'HTTPRoute "cars" mirrors to "cars-gpu", which takes 20% of live traffic; mirror only to a deployment '
                "with 0 live traffic",
            )
        ],
        id="mirror-to-live",
    ),
    pytest.param(
        lambda s: s.__setitem__(7, fx.route(gateway="public")),
        PROD,
        [
            (
                "prod-endpoint-private",
                'HTTPRoute "cars" attaches to public Gateway "public"; prod endpoints must be private: set '
                'public_network_access: disabled so the route attaches to Gateway "private"',
            )
        ],
        id="prod-public",
    ),
    pytest.param(lambda s: s.__setitem__(7, fx.route(gateway="public")), DEV, [], id="dev-public-allowed"),
    pytest.param(
        lambda s: fx.pod(s[1]).pop("nodeSelector"),
        PROD,
        [
            (
                "gpu-on-gpu-pool",
                'container "scorer" requests nvidia.com/gpu but the pod selects no GPU pool; set '
                'nodeSelector["ml-endpoints.io/pool"] from the instance type\'s pool',
            )
        ],
        id="gpu-no-pool",
    ),
    pytest.param(
        lambda s: fx.pod(s[1]).pop("tolerations"),
        PROD,
        [
            (
                "gpu-on-gpu-pool",
                'container "scorer" requests nvidia.com/gpu but the pod does not tolerate the GPU taint; add a '
                'toleration for key "nvidia.com/gpu"',
            )
        ],
        id="gpu-no-toleration",
    ),
    pytest.param(
        lambda s: _c(s)["env"].append({"name": "AZURE_STORAGE_KEY", "value": "abc"}),
        PROD,
        [
            (
                "keys-not-in-plain-config",
                'container "scorer" sets AZURE_STORAGE_KEY as a plain value; load it from a Secret '
                "(valueFrom.secretKeyRef or a mounted file)",
            )
        ],
        id="key-in-env",
    ),
    pytest.param(
        lambda s: _c(s)["env"].append(
            {"name": "AZURE_STORAGE_KEY", "valueFrom": {"secretKeyRef": {"name": "storage", "key": "key"}}}
        ),
        PROD,
        [],
        id="key-from-secret-allowed",
    ),
    pytest.param(
        lambda s: s.__setitem__(9, fx.configmap(primary="k1", ENDPOINTS_KEYS_DIR="/keys", api_token="t")),
        PROD,
        [
            (
                "keys-not-in-plain-config",
                'ConfigMap "cars-settings" holds "api_token" in plain config; move it to a Secret and mount it',
            ),
            (
                "keys-not-in-plain-config",
                'ConfigMap "cars-settings" holds "primary" in plain config; move it to a Secret and mount it',
            ),
        ],
        id="keys-in-configmap",
    ),
]


@pytest.mark.parametrize(("mutate", "ctx", "expected"), CASES)
def test_rule(mutate: Mutator, ctx: Context, expected: list[tuple[str, str]]) -> None:
    objects = fx.stack()
    mutate(objects)
    assert _found(objects, ctx) == expected


def test_default_deny_missing_names_the_namespace_once() -> None:
    objects = [o for o in fx.stack() if o["kind"] != "NetworkPolicy"]
    found = check_objects(objects, PROD)
    assert found == [
        Violation(
            policy="default-deny-network-policy",
            message='namespace "ml" has no default-deny NetworkPolicy; add one with podSelector: {}, policyTypes: '
            "[Ingress] and no ingress rules",
            kind="Deployment",
            namespace="ml",
            name="cars-blue",
        )
    ]


def test_job_is_checked_for_pod_security_but_not_probes_or_replicas() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "score", "namespace": "ml"},
        "spec": {"template": fx.clone(fx.deployment()["spec"]["template"])},
    }
    fx.container(job).pop("readinessProbe")
    fx.container(job)["securityContext"]["readOnlyRootFilesystem"] = False
    objects = [*fx.stack(), job]
    assert _found(objects, PROD) == [
        (
            "read-only-root-filesystem",
            'container "scorer" has a writable root filesystem; set securityContext.readOnlyRootFilesystem: true and '
            "mount an emptyDir at /tmp",
        )
    ]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", ("nginx", None, None)),
        ("nginx:1.27", ("nginx", "1.27", None)),
        ("localhost:5000/a/b", ("localhost:5000/a/b", None, None)),
        ("localhost:5000/a/b:2", ("localhost:5000/a/b", "2", None)),
        (f"r.io/x:1@{fx.DIGEST}", ("r.io/x", "1", fx.DIGEST)),
        (f"r.io/x@{fx.DIGEST}", ("r.io/x", None, fx.DIGEST)),
    ],
)
def test_split_image(image: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_image(image) == expected


@pytest.mark.parametrize(
    ("obj", "token"),
    [
        (fx.deployment(), "kubernetes:apps/v1:Deployment"),
        (fx.service(), "kubernetes:core/v1:Service"),
        (fx.route(), "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"),
        (fx.scaled_object(), "kubernetes:keda.sh/v1alpha1:ScaledObject"),
    ],
)
def test_type_token(obj: dict[str, Any], token: str) -> None:
    assert type_token(obj) == token


def test_batch_runner_job_is_not_a_serving_container() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "score", "namespace": "ml"},
        "spec": {"template": fx.clone(fx.deployment()["spec"]["template"])},
    }
    fx.container(job)["env"] = [{"name": "ENDPOINTS_BATCH_SETTINGS", "value": "{}"}]
    assert _found([*fx.stack(), job], PROD) == []
    fx.container(job)["env"].append({"name": "ENDPOINTS_MAX_BODY_BYTES", "value": "1"})
    assert _found([*fx.stack(), job], PROD) == [
        (
            "auth-enabled",
            'container "scorer" has no ENDPOINTS_AUTH_MODE, so auth defaults to none; set it to key, aml_token or '
            "aad_token",
        )
    ]


@pytest.mark.parametrize(("mutate", "ctx", "expected"), CASES)
def test_rule_through_crossguard_validators(mutate: Mutator, ctx: Context, expected: list[tuple[str, str]]) -> None:
    """The same cases through the CrossGuard wrappers: the pack reports exactly what the plain checks report."""
    objects = fx.stack()
    mutate(objects)
    assert sorted(fx.crossguard_findings(objects, {"environment": ctx.environment})) == sorted(expected)
