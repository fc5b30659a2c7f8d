"""The policy pack on the batch job API the stacks render: replicas, PDB and privacy rules see it like any endpoint."""

from __future__ import annotations

import pytest

from components.builders.batch_job_api import (
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


# ------------------------------------------------------------------------------------- the Job template of a deployment


def _template_config_map(image: str, run_as_user: int = 10001) -> dict:
    from components.builders.batch_job import build_job_template, build_template_config_map
    from endpoints.catalog import InstanceCatalog
    from endpoints.specs import BatchDeployment

    deployment = BatchDeployment.model_validate(
        {
            "name": "nightly",
            "endpoint_name": "cars-batch",
            "model": {"path": "./model"},
            "code_configuration": {"code": "./code", "scoring_script": "score.py"},
        }
    )
    settings = ClusterSettings(namespace="ml-prod", run_as_user=run_as_user)
    template = build_job_template(
        ENDPOINT, deployment, InstanceCatalog.default().get("Standard_DS3_v2"), settings, image
    )
    return build_template_config_map(ENDPOINT, deployment, template, settings)


def test_the_job_template_inside_its_config_map_is_checked() -> None:
    """The runner pods exist only as the template the job API instantiates: the rules look inside the ConfigMap."""
    assert _found([_template_config_map(IMAGE)]) == []
    tagged = "registry.example.com/ml/cars-batch-nightly:1.0"
    assert _found([_template_config_map(tagged, run_as_user=1000)]) == [
        (
            "run-as-non-root",
            "Job/ml-prod/cars-batch-nightly-batch",
            'container "runner" runs as uid 1000; set securityContext.runAsUser to 10000 or above',
        ),
        (
            "pinned-images",
            "Job/ml-prod/cars-batch-nightly-batch",
            f'container "runner" uses image "{tagged}" without a digest; prod requires image@sha256:...',
        ),
    ]


def test_crossguard_checks_the_job_template_of_a_config_map() -> None:
    from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs
    from pulumi_policy.proxy import unknown_checking_proxy

    from policies.rules.workloads import pinned_images_validator

    cm = _template_config_map("registry.example.com/ml/cars-batch-nightly:1.0")
    token = "kubernetes:core/v1:ConfigMap"
    props = {k: v for k, v in cm.items() if k not in ("apiVersion", "kind")}
    args = ResourceValidationArgs(
        token,
        unknown_checking_proxy(props),
        f"urn:pulumi:prod::ml::{token}::x",
        "x",
        PolicyResourceOptions(False, [], None, [], None, [], None),  # type: ignore[arg-type]
        None,
        {"environment": "prod"},
    )
    reported: list[str] = []
    pinned_images_validator(args, lambda message, urn=None: reported.append(message))
    assert reported == [
        'container "runner" uses image "registry.example.com/ml/cars-batch-nightly:1.0" without a digest; prod'
        " requires image@sha256:..."
    ]
