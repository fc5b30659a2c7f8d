"""request_settings.max_batch_size / max_batch_wait_ms: validated in the spec, rendered for the cluster and local mode
as the ENDPOINTS_MAX_BATCH_* variables the serving process reads (serving.batching.BatchSettings)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from specs_factory import DIGEST, SETTINGS, deployment, endpoint, instance

from components.builders.online import build_deployment
from endpoints.errors import SpecError
from endpoints.local.supervisor import plan_deployment
from endpoints.project import load_endpoint_project
from serving.batching import BatchSettings


def _env(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in obj["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}


def test_cluster_renders_the_batch_variables_the_server_reads() -> None:
    dep = deployment(
        request_settings={"max_concurrent_requests_per_instance": 64, "max_batch_size": 32, "max_batch_wait_ms": 2}
    )
    env = _env(build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    assert {k: v for k, v in env.items() if "BATCH" in k} == {
        "ENDPOINTS_MAX_BATCH_SIZE": "32",
        "ENDPOINTS_MAX_BATCH_WAIT_MS": "2",
    }
    assert BatchSettings.from_env(env) == BatchSettings(max_batch_size=32, max_batch_wait_ms=2)


def test_batching_unset_renders_nothing_and_the_default_wait_fills_in() -> None:
    env = _env(build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    assert not [k for k in env if "BATCH" in k]
    dep = deployment(request_settings={"max_concurrent_requests_per_instance": 8, "max_batch_size": 8})
    env = _env(build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    assert (env["ENDPOINTS_MAX_BATCH_SIZE"], env["ENDPOINTS_MAX_BATCH_WAIT_MS"]) == ("8", "5")


@pytest.mark.parametrize(
    ("request_settings", "message"),
    [
        pytest.param(
            {"max_batch_size": 16},
            "request_settings.max_batch_size: got 16 > max_concurrent_requests_per_instance 1; a batch only holds "
            "requests admitted at once, so set max_concurrent_requests_per_instance to at least 16",
            id="larger-than-admission",
        ),
        pytest.param(
            {"max_batch_wait_ms": 3},
            "request_settings.max_batch_wait_ms: got 3 without max_batch_size; set max_batch_size (above 1) to turn "
            "batching on",
            id="wait-without-size",
        ),
    ],
)
def test_bad_batch_settings_are_refused_with_the_field(request_settings: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        deployment(request_settings=request_settings)
    assert message in str(e.value)


def test_cluster_refuses_the_variable_in_environment_variables_when_the_spec_sets_it() -> None:
    dep = deployment(
        request_settings={"max_concurrent_requests_per_instance": 8, "max_batch_size": 8},
        environment_variables={"ENDPOINTS_MAX_BATCH_SIZE": "4"},
    )
    with pytest.raises(SpecError) as e:
        build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert str(e.value) == (
        "<spec>: environment_variables.ENDPOINTS_MAX_BATCH_SIZE: set by the platform from the spec; change the"
        " corresponding spec field instead"
    )


def _project(tmp_path: Path, request_settings: str, env: str = "") -> Path:
    root = tmp_path / "shop"
    (root / "code").mkdir(parents=True)
    (root / "code" / "score.py").write_text("def init():\n    pass\n\n\ndef run(data):\n    return data\n")
    (root / "endpoint.yml").write_text("name: shop\nauth_mode: key\ntraffic:\n  blue: 100\n")
    (root / "deployments").mkdir()
    (root / "deployments" / "blue.yml").write_text(
        textwrap.dedent(
            """\
            name: blue
            endpoint_name: shop
            code_configuration:
              code: ../code
              scoring_script: score.py
            environment:
              image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
            instance_type: Standard_DS3_v2
            """
        )
        + request_settings
        + env
    )
    return root


def test_local_mode_uses_the_yaml_keys(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        "request_settings:\n  max_concurrent_requests_per_instance: 16\n  max_batch_size: 16\n  max_batch_wait_ms: 1\n",
    )
    launch = plan_deployment(load_endpoint_project(root), "blue", tmp_path / "keys")
    assert (launch.env["ENDPOINTS_MAX_BATCH_SIZE"], launch.env["ENDPOINTS_MAX_BATCH_WAIT_MS"]) == ("16", "1")


def test_local_mode_takes_the_variables_from_environment_variables_when_the_spec_is_silent(tmp_path: Path) -> None:
    root = _project(tmp_path, "", "environment_variables:\n  ENDPOINTS_MAX_BATCH_SIZE: '4'\n")
    launch = plan_deployment(load_endpoint_project(root), "blue", tmp_path / "keys")
    assert launch.env["ENDPOINTS_MAX_BATCH_SIZE"] == "4"
    assert "ENDPOINTS_MAX_BATCH_WAIT_MS" not in launch.env
