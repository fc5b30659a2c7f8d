"""Offline validation of Kubernetes objects: strict core schemas, CRD schemas, metadata rules, caching."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from components import k8s_schema
from components.k8s_schema import KUBERNETES_VERSION, crd_dir, validate_object, validate_objects

SHARED_CRDS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "crds"


def _deployment(**container: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "cars-alice", "namespace": "ml", "labels": {"app": "cars"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "cars"}},
            "template": {
                "metadata": {"labels": {"app": "cars"}},
                "spec": {"containers": [{"name": "scorer", "image": "img:1", **container}]},
            },
        },
    }


def _route(**rule: object) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "cars", "namespace": "ml"},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateway-system"}],
            "hostnames": ["cars.example.com"],
            "rules": [{"backendRefs": [{"name": "cars-alice", "port": 80, "weight": 100}], **rule}],
        },
    }


def test_valid_core_object_passes() -> None:
    assert validate_object(_deployment()) == []


def test_unknown_core_field_is_an_error_strict() -> None:
    assert validate_object(_deployment(imagePullPolicyy="Always")) == [
        "Deployment/cars-alice: spec.template.spec.containers.0: Additional properties are not allowed"
        " ('imagePullPolicyy' was unexpected)"
    ]


def test_wrong_type_names_the_field() -> None:
    obj = _deployment()
    obj["spec"]["replicas"] = "two"
    assert validate_object(obj) == ["Deployment/cars-alice: spec.replicas: 'two' is not of type 'integer', 'null'"]


def test_integral_floats_from_pulumi_mocks_count_as_integers() -> None:
    obj = _deployment()
    obj["spec"]["replicas"] = 2.0
    assert validate_object(obj) == []


def test_unknown_kind_is_reported_not_passed() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert validate_object(obj) == [
        f"Widget/w: no schema for kind 'Widget' in 'example.com/v1' (Kubernetes {KUBERNETES_VERSION} or CRDs)"
    ]


def test_missing_api_version() -> None:
    assert validate_object({"kind": "Service", "metadata": {"name": "s"}}) == [
        "Service/s: apiVersion/kind: missing (got apiVersion=None, kind='Service')"
    ]


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        pytest.param(
            "Service",
            "1cars",
            "metadata.name: got '1cars'; a Service name must be a DNS-1035 label (<= 63 characters)",
            id="service-digit-first",
        ),
        pytest.param(
            "ConfigMap",
            "Cars",
            "metadata.name: got 'Cars'; a ConfigMap name must be a DNS-1123 subdomain",
            id="upper-case",
        ),
        pytest.param(
            "Service",
            "a" * 64,
            f"metadata.name: got {'a' * 64!r}; a Service name must be a DNS-1035 label (<= 63 characters)",
            id="too-long",
        ),
    ],
)
def test_bad_names(kind: str, name: str, message: str) -> None:
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    assert validate_object(obj) == [f"{kind}/{name}: {message}"]


def test_label_value_rules() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"team": "a b"}}}
    assert validate_object(obj) == [
        "ConfigMap/c: metadata.labels.team: got 'a b'; label values are <= 63 alphanumerics, '-', '_', '.'"
    ]


def test_cluster_scoped_kind_with_namespace() -> None:
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml", "namespace": "x"}}
    assert validate_object(obj) == ["Namespace/ml: metadata.namespace: Namespace is cluster-scoped; got namespace 'x'"]


def test_valid_httproute_with_mirror_passes() -> None:
    route = _route(
        filters=[
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "cars-bob", "port": 80}, "percent": 10}}
        ]
    )
    assert validate_object(route) == []


def test_crd_unknown_field_is_an_error() -> None:
    assert validate_object(_route(weight=3)) == [
        "HTTPRoute/cars: spec.rules.0: Additional properties are not allowed ('weight' was unexpected)"
    ]


def test_crd_enum_violation() -> None:
    route = _route(filters=[{"type": "Mirror"}])
    problems = validate_object(route)
    assert problems and all(p.startswith("HTTPRoute/cars: spec.rules.0.filters.0") for p in problems), problems
    assert any("'Mirror' is not one of" in p for p in problems), problems


def test_crd_metadata_checked_against_object_meta() -> None:
    route = _route()
    route["metadata"]["generateName"] = 7
    assert validate_object(route) == ["HTTPRoute/cars: metadata.generateName: 7 is not of type 'string', 'null'"]


def test_crd_wrong_version_has_no_schema() -> None:
    route = _route()
    route["apiVersion"] = "gateway.networking.k8s.io/v9"
    assert validate_object(route) == [
        f"HTTPRoute/cars: no schema for kind 'HTTPRoute' in 'gateway.networking.k8s.io/v9'"
        f" (Kubernetes {KUBERNETES_VERSION} or CRDs)"
    ]


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": "so", "namespace": "ml"},
                "spec": {"scaleTargetRef": {"name": "d"}, "triggers": [{"type": "cpu", "metadata": {"value": "70"}}]},
            },
            id="keda-scaledobject",
        ),
        pytest.param(
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "LocalQueue",
                "metadata": {"name": "q", "namespace": "ml"},
                "spec": {"clusterQueue": "cq"},
            },
            id="kueue-localqueue",
        ),
    ],
)
def test_other_crds_validate(obj: dict) -> None:
    assert validate_object(obj) == []


def test_schema_version_is_the_newest_kubernetes_validate_ships() -> None:
    assert KUBERNETES_VERSION.rsplit(".", 1)[0] == kubernetes_validate.utils.latest_version().rsplit(".", 1)[0]


def test_crds_are_package_data_identical_to_shared() -> None:
    names = sorted(p.name for p in crd_dir().glob("*.yaml"))
    assert len(names) == 11
    if not SHARED_CRDS.is_dir():
        pytest.skip(f"{SHARED_CRDS} not present beside the repository (clean clone): nothing to compare")
    for name in names:
        assert (crd_dir() / name).read_bytes() == (SHARED_CRDS / name).read_bytes(), name


def test_validators_are_compiled_once_per_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind's validator is compiled once and reused (the speed this buys is measured in bench/plan)."""
    objs = [_deployment(), _route()]
    validate_objects(objs)  # warm: compile once per kind
    compiled = {
        key: k8s_schema._validators[key]
        for key in (("apps/v1", "Deployment"), ("gateway.networking.k8s.io/v1", "HTTPRoute"))
    }
    compiles: list[tuple[str, ...]] = []
    for name in ("_core_validator", "_crd_validator"):
        original = getattr(k8s_schema, name)
        monkeypatch.setattr(k8s_schema, name, lambda *a, _f=original: compiles.append(a) or _f(*a))
    for _ in range(3):
        assert validate_objects(objs) == []
    assert compiles == []
    assert all(k8s_schema.validator_for(*key) is v for key, v in compiled.items())
