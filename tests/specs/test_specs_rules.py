"""Every spec rule pins its exact error text: ``file:line: field.path: message``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from endpoints.errors import SpecError
from endpoints.loader import load_spec

DEPLOYMENT = """\
name: alice
endpoint_name: cars
model:
  path: model
code_configuration:
  code: code
  scoring_script: score.py
environment:
  image: python:3.11-slim
instance_type: Standard_DS3_v2
"""


def problems_of(tmp_path: Path, text: str, name: str = "spec.yml") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]


ENDPOINT_CASES = [
    pytest.param(
        "name: cars\ntraffic:\n  alice: 90\n  bob: 20\n",
        ["spec.yml:2: traffic: got 90+20=110; live traffic must sum to 0 or 100"],
        id="traffic-over-100",
    ),
    pytest.param(
        "name: cars\ntraffic:\n  alice: 50\n",
        ["spec.yml:2: traffic: got 50=50; live traffic must sum to 0 or 100"],
        id="traffic-under-100",
    ),
    pytest.param(
        "name: cars\ntraffic:\n  alice: 90.5\n  bob: 9.5\n",
        [
            "spec.yml:3: traffic.alice: got 90.5; input should be a valid integer",
            "spec.yml:4: traffic.bob: got 9.5; input should be a valid integer",
        ],
        id="weights-are-integers",
    ),
    pytest.param(
        "name: cars\ntraffic:\n  alice: 101\n",
        ["spec.yml:3: traffic.alice: got 101; input should be less than or equal to 100"],
        id="weight-over-100",
    ),
    pytest.param(
        "name: cars\ntraffic:\n  alice: -5\n  bob: 105\n",
        [
            "spec.yml:3: traffic.alice: got -5; input should be greater than or equal to 0",
            "spec.yml:4: traffic.bob: got 105; input should be less than or equal to 100",
        ],
        id="weight-negative",
    ),
    pytest.param(
        "name: cars\ntraffic: {alice: 100}\nmirror_traffic: {bob: 60}\n",
        ["spec.yml:3: mirror_traffic.bob: got 60; at most 50 % can be mirrored"],
        id="mirror-over-50",
    ),
    pytest.param(
        "name: cars\ntraffic: {alice: 100}\nmirror_traffic: {bob: 10, carol: 10}\n",
        ["spec.yml:3: mirror_traffic: got ['bob', 'carol']; traffic can be mirrored to one deployment only"],
        id="mirror-one-target",
    ),
    pytest.param(
        "name: cars\ntraffic: {alice: 90, bob: 10}\nmirror_traffic: {bob: 10}\n",
        [
            "spec.yml:3: mirror_traffic.bob: deployment 'bob' receives 10 % live traffic;"
            " traffic can only be mirrored to a deployment with no live traffic"
        ],
        id="mirror-to-live",
    ),
    pytest.param(
        "name: 1cars\n",
        [
            "spec.yml:1: name: got '1cars'; names are 3 to 32 characters: a letter first, then letters, digits or hyphens, and no hyphen last (they become Kubernetes names)"
        ],
        id="name-letter-first",
    ),
    pytest.param(
        "name: ab\n",
        [
            "spec.yml:1: name: got 'ab'; names are 3 to 32 characters: a letter first, then letters, digits or hyphens, and no hyphen last (they become Kubernetes names)"
        ],
        id="name-too-short",
    ),
    pytest.param(
        f"name: {'a' * 33}\n",
        [
            f"spec.yml:1: name: got '{'a' * 33}'; names are 3 to 32 characters: a letter first,"
            " then letters, digits or hyphens, and no hyphen last (they become Kubernetes names)"
        ],
        id="name-too-long",
    ),
    pytest.param(
        "name: cars-\n",
        [
            "spec.yml:1: name: got 'cars-'; names are 3 to 32 characters: a letter first, then letters, digits or hyphens, and no hyphen last (they become Kubernetes names)"
        ],
        id="name-hyphen-last",
    ),
    pytest.param(
        "name: car_s\n",
        [
            "spec.yml:1: name: got 'car_s'; names are 3 to 32 characters: a letter first, then letters, digits or hyphens, and no hyphen last (they become Kubernetes names)"
        ],
        id="name-underscore",
    ),
    pytest.param(
        "name: cars\nauth_mode: password\n",
        ["spec.yml:2: auth_mode: got 'password'; input should be 'key', 'aml_token' or 'aad_token'"],
        id="auth-mode",
    ),
    pytest.param(
        "name: cars\ntrafic: {alice: 100}\n",
        ["spec.yml:2: trafic: unknown field (got {'alice': 100}); check the spelling against Azure's schema"],
        id="unknown-field",
    ),
    pytest.param(
        "name: cars\nname: bikes\n",
        ["spec.yml:2: name: key appears twice"],
        id="duplicate-key",
    ),
    pytest.param(
        "name: {{ endpoint_name }}\n",
        ["spec.yml:1: not valid YAML: found unhashable key"],
        id="unquoted-jinja-is-bad-yaml",
    ),
    pytest.param(
        'name: "{{ endpoint_name }}"\n',
        ["spec.yml:1: name: got '{{ endpoint_name }}'; unresolved template placeholder '{{ endpoint_name }}'"],
        id="jinja-placeholder",
    ),
    pytest.param(
        "name: <ENDPOINT_NAME>\n",
        ["spec.yml:1: name: got '<ENDPOINT_NAME>'; unresolved template placeholder '<ENDPOINT_NAME>'"],
        id="angle-placeholder",
    ),
    pytest.param("", ["spec.yml: expected a mapping of fields, got an empty file"], id="empty-file"),
    pytest.param("- a\n- b\n", ["spec.yml:1: expected a mapping of fields, got a list"], id="not-a-mapping"),
]


@pytest.mark.parametrize(("text", "expected"), ENDPOINT_CASES)
def test_endpoint_rules(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems_of(tmp_path, text) == expected


DEPLOYMENT_CASES = [
    pytest.param(
        {"instance_count": "0"},
        ["spec.yml:11: instance_count: got 0; input should be greater than or equal to 1"],
        id="instance-count-0",
    ),
    pytest.param(
        {"instance_type": "Standard_XX"},
        ["spec.yml:10: instance_type: unknown instance type 'Standard_XX'; known types: "],
        id="unknown-instance-type",
    ),
    pytest.param(
        {"request_settings": "{request_timeout_ms: 200000}"},
        ["spec.yml:11: request_settings.request_timeout_ms: got 200000; managed deployments allow at most 180000"],
        id="managed-timeout-max",
    ),
    pytest.param(
        {"type": "kubernetes", "request_settings": "{request_timeout_ms: 300001}"},
        ["spec.yml:12: request_settings.request_timeout_ms: got 300001; input should be less than or equal to 300000"],
        id="kubernetes-timeout-max",
    ),
    pytest.param(
        {"type": "kubernetes", "scale_settings": "{type: target_utilization, min_instances: 4, max_instances: 2}"},
        ["spec.yml:12: scale_settings.min_instances: got 4 > max_instances 2; min_instances must be <= max_instances"],
        id="min-le-max",
    ),
    pytest.param(
        {"scale_settings": "{type: target_utilization, max_instances: 2}"},
        ["spec.yml:11: scale_settings: target_utilization is for kubernetes deployments (type: kubernetes)"],
        id="autoscale-managed",
    ),
    pytest.param(
        {"scale_settings": "{type: sometimes}"},
        [
            "spec.yml:11: scale_settings: got {'type': 'sometimes'}; input tag 'sometimes' found using 'type'"
            " does not match any of the expected tags: 'default', 'target_utilization'"
        ],
        id="scale-type",
    ),
    pytest.param(
        {"environment": "my-env:1"},
        [
            "spec.yml:8: environment: got 'my-env:1'; a reference is azureml:<name>:<version> or"
            " azureml:<name>@latest (or write the asset inline)"
        ],
        id="bad-reference",
    ),
    pytest.param(
        {"environment": "azureml:sk-env:3"},
        ["spec.yml:8: environment: 'azureml:sk-env:3': no environment named 'sk-env' in registry.yml (known: none)"],
        id="unresolved-reference",
    ),
    pytest.param(
        {"resources": "{requests: {cpu: lots}}"},
        ["spec.yml:11: resources.requests.cpu: got 'lots'; not a Kubernetes quantity (e.g. 500m, 2, 4Gi)"],
        id="bad-quantity-and-managed",
    ),
    pytest.param(
        {"environment_variables": "{TOKEN: '{{ secret }}'}"},
        [
            "spec.yml:11: environment_variables.TOKEN: got '{{ secret }}'; unresolved template placeholder '{{ secret }}'"
        ],
        id="placeholder-in-env",
    ),
    pytest.param(
        {"data_collector": "{collections: {model_inputs: {enabled: 'True'}}, sampling_rate: 1.5}"},
        ["spec.yml:11: data_collector.sampling_rate: got 1.5; input should be less than or equal to 1"],
        id="collector-sampling-rate",
    ),
    pytest.param(
        {"data_collector": "{collections: {model_inputs: {enabled: 'True'}}, rolling_rate: Week}"},
        [
            "spec.yml:11: data_collector.rolling_rate: got 'week'; input should be 'minute', 'hour', 'day', 'month'"
            " or 'year'"
        ],
        id="collector-rolling-rate",
    ),
    pytest.param(
        {"data_collector": "{collections: {model_inputs: {enabled: 'yes'}}}"},
        ["spec.yml:11: data_collector.collections.model_inputs.enabled: got 'yes'; use 'True' or 'False'"],
        id="collector-enabled",
    ),
    pytest.param(
        {"data_collector": "{collections: {request: {enabled: 'True'}}, request_logging: {capture_headers: [Cookie]}}"},
        [
            "spec.yml:11: data_collector.request_logging.capture_headers: 'Cookie' carries credentials, which are"
            " never collected"
        ],
        id="collector-secret-header",
    ),
    pytest.param(
        {
            "data_collector": "{collections: {model_inputs: {enabled: 'True', data: {path: 's3://a/x'}},"
            " model_outputs: {enabled: 'True', data: {path: 's3://b/y'}}}}"
        },
        [
            "spec.yml:11: data_collector.collections: data.path: got s3://a/x, s3://b/y; every enabled collection"
            " of a deployment is written to one store: give them the same data.path, or none"
        ],
        id="collector-two-stores",
    ),
]


def deployment_text(overrides: dict[str, str]) -> str:
    lines = DEPLOYMENT.splitlines()
    keys = [line.split(":")[0] for line in lines]
    for key, value in overrides.items():
        if key in keys and not lines[keys.index(key)].endswith(":"):
            lines[keys.index(key)] = f"{key}: {value}"
        elif key in keys:  # a block mapping: replace it with a flow value
            start = keys.index(key)
            end = start + 1
            while end < len(lines) and lines[end].startswith("  "):
                end += 1
            lines[start:end] = [f"{key}: {value}"]
            keys = [line.split(":")[0] for line in lines]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("overrides", "expected"), DEPLOYMENT_CASES)
def test_deployment_rules(tmp_path: Path, overrides: dict[str, str], expected: list[str]) -> None:
    got = problems_of(tmp_path, deployment_text(overrides))
    assert len(got) == len(expected), got
    for line, want in zip(got, expected, strict=True):
        # Messages listing long tables (known instance types, pydantic patterns) are pinned by their start.
        assert line.startswith(want), (line, want)


def test_unknown_instance_type_lists_every_known_type(tmp_path: Path) -> None:
    (line,) = problems_of(tmp_path, deployment_text({"instance_type": "Standard_XX"}))
    assert "Standard_DS3_v2, Standard_DS4_v2" in line
    assert line.endswith("cpu-small, defaultinstancetype, gpu-1, gpu-2")


BATCH_DEPLOYMENT = """\
name: scorer
endpoint_name: batchy
type: {type}
code_configuration:
  code: code
  scoring_script: driver.py
environment:
  image: python:3.11-slim
{extra}"""

BATCH_CASES = [
    pytest.param(
        {"type": "pipeline", "extra": ""},
        ["spec.yml:3: type: got 'pipeline'; pipeline batch deployments are not supported, use type: model"],
        id="pipeline-rejected",
    ),
    pytest.param(
        {"type": "model", "extra": "settings:\n  output_file_name: out/predictions.csv\n"},
        [
            "spec.yml:10: settings.output_file_name: got 'out/predictions.csv'; a plain file name is expected (the output folder is given per job)"
        ],
        id="output-file-plain-name",
    ),
    pytest.param(
        {"type": "model", "extra": "mini_batch_size: 5\nsettings:\n  mini_batch_size: 6\n"},
        ["spec.yml:11: settings.mini_batch_size: set both at the root and under settings; keep one"],
        id="settings-twice",
    ),
    pytest.param(
        {"type": "model", "extra": "settings:\n  error_threshold: -2\n  output_action: everything\n"},
        [
            "spec.yml:10: settings.error_threshold: got -2; input should be greater than or equal to -1",
            "spec.yml:11: settings.output_action: got 'everything'; input should be 'append_row' or 'summary_only'",
        ],
        id="threshold-and-action",
    ),
    pytest.param(
        {"type": "model", "extra": "settings:\n  retry_settings: {max_retries: -1, timeout: 0}\n"},
        [
            "spec.yml:10: settings.retry_settings.max_retries: got -1; input should be greater than or equal to 0",
            "spec.yml:10: settings.retry_settings.timeout: got 0; input should be greater than or equal to 1",
        ],
        id="retry-settings",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), BATCH_CASES)
def test_batch_rules(tmp_path: Path, fields: dict[str, str], expected: list[str]) -> None:
    assert problems_of(tmp_path, BATCH_DEPLOYMENT.format(**fields)) == expected


def test_batch_deployment_without_code_needs_mlflow_model(tmp_path: Path) -> None:
    text = (
        "name: scorer\nendpoint_name: batchy\ntype: model\nmodel: {path: m}\nenvironment: {image: python:3.11-slim}\n"
    )
    assert problems_of(tmp_path, text) == [
        "spec.yml:1: code_configuration: missing; only MLflow models (type: mlflow_model) run without code"
    ]
    (tmp_path / "ok.yml").write_text(text.replace("{path: m}", "{path: m, type: mlflow_model}"), encoding="utf-8")
    spec = load_spec(tmp_path / "ok.yml")
    assert spec.kind == "batch"
