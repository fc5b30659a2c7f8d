"""The policy pack on the batch job API the stacks render: replicas, PDB and privacy rules see it like any endpoint."""

from __future__ import annotations

import pytest

from components.builders.batch import (
    build_job_api_objects,
    build_job_api_pdb,
    build_job_api_route,
)
from components.builders.common import ClusterSettings
from components.builders.namespace import build_default_deny
from endpoints.specs import BatchEndpoint
from policies.rules import check_objects
from policies.rules.common import Context

SETTINGS = ClusterSettings(namespace="ml-prod")
IMAGE = "registry.example.com/ml/endpoints-batch-job-api@sha256:" + "a" * 64
PROD = Context(environment="prod", private_gateways=("gateway-system/private",))
ENDPOINT = BatchEndpoint.model_validate({"name": "cars-batch", "auth_mode": "key"})


def _job_api(replicas: int, pdb: bool = True) -> list[dict]:
    objs = build_job_api_objects(ENDPOINT, ["nightly"], SETTINGS, IMAGE, replicas=replicas)
    return [*objs, build_job_api_pdb(ENDPOINT, SETTINGS)] if pdb else objs


def _found(objects: list[dict], ctx: Context = PROD) -> list[tuple[str, str, str]]:
    """Violations of ``objects`` in a namespace that denies ingress by default (as the stacks create it)."""
    return [(v.policy, v.ref(), v.message) for v in check_objects([build_default_deny("ml-prod"), *objects], ctx)]


def test_three_replicas_with_a_pdb_pass_every_prod_rule() -> None:
    assert _found(_job_api(3)) == []


@pytest.mark.parametrize(
    ("environment", "replicas", "expected"),
    [
        pytest.param("prod", 2, 3, id="prod-needs-3"),
        pytest.param("staging", 1, 2, id="staging-needs-2"),
    ],
)
def test_too_few_replicas(environment: str, replicas: int, expected: int) -> None:
    found = _found(_job_api(replicas), Context(environment=environment))  # type: ignore[arg-type]
    noun = "replica" if replicas == 1 else "replicas"
    assert found == [
        (
            "min-replicas",
            "Deployment/ml-prod/cars-batch-jobs",
            f'Deployment "cars-batch-jobs" runs {replicas} {noun}; set replicas (instance_count) to {expected} or more',
        )
    ]


def test_job_api_without_pdb_is_reported() -> None:
    assert _found(_job_api(3, pdb=False)) == [
        (
            "pdb-present",
            "Deployment/ml-prod/cars-batch-jobs",
            'Deployment "cars-batch-jobs" has no PodDisruptionBudget; add one selecting its pods with maxUnavailable 1',
        )
    ]


def test_prod_job_api_route_must_be_private() -> None:
    private = ClusterSettings(namespace="ml-prod")
    assert _found([build_job_api_route(ENDPOINT, private, private=True)]) == []
    [(policy, ref, _)] = _found([build_job_api_route(ENDPOINT, private, private=False)])
    assert (policy, ref) == ("prod-endpoint-private", "HTTPRoute/ml-prod/cars-batch")
