"""Payload logging (data_collector) in the cluster: the serving container's settings and where the lines go."""

from __future__ import annotations

import dataclasses

import pytest
from specs_factory import DIGEST, SETTINGS, deployment, endpoint, instance

from components.builders.online import DATA_COLLECTOR_DIR, build_deployment_objects
from components.k8s_schema import validate_objects
from contract.serving import DataCollectorSettings

COLLECTOR = {
    "collections": {"model_inputs": {"enabled": "True"}, "model_outputs": {"enabled": "True"}},
    "sampling_rate": 0.25,
    "rolling_rate": "Minute",
    "request_logging": {"capture_headers": ["x-client-tag"]},
}


def _pod(settings, **fields):
    objs = build_deployment_objects(endpoint(), deployment(**fields), instance("Standard_DS3_v2"), settings, DIGEST)
    assert validate_objects(objs) == []
    pod = objs[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    collector = {k: v for k, v in env.items() if k.startswith("ENDPOINTS_DATA_COLLECTOR_")}
    volume = next((v for v in pod["volumes"] if v["name"] == "data-collector"), None)
    mount = next((m for m in container["volumeMounts"] if m["name"] == "data-collector"), None)
    return collector, volume, mount


def test_an_emptydir_by_default_with_the_settings_the_serving_process_reads():
    collector, volume, mount = _pod(SETTINGS, data_collector=COLLECTOR)
    assert collector == {
        "ENDPOINTS_DATA_COLLECTOR_PATH": f"{DATA_COLLECTOR_DIR}/cars/alice",
        "ENDPOINTS_DATA_COLLECTOR_COLLECTIONS": "model_inputs,model_outputs",
        "ENDPOINTS_DATA_COLLECTOR_SAMPLING_RATE": "0.25",
        "ENDPOINTS_DATA_COLLECTOR_ROLLING_RATE": "minute",
        "ENDPOINTS_DATA_COLLECTOR_CAPTURE_HEADERS": "x-client-tag",
        "ENDPOINTS_DATA_COLLECTOR_QUEUE_RECORDS": "10000",
        "ENDPOINTS_DATA_COLLECTOR_QUEUE_BYTES": str(64 * 1024 * 1024),
        "ENDPOINTS_DATA_COLLECTOR_CLOCK_STEP_MS": "0",
    }
    # What the builder renders is what the serving process reads back.
    read = DataCollectorSettings.from_env(collector)
    assert read is not None and read.to_env() == collector
    assert volume == {"name": "data-collector", "emptyDir": {"sizeLimit": "1Gi"}}
    assert mount == {"name": "data-collector", "mountPath": DATA_COLLECTOR_DIR}


@pytest.mark.parametrize(
    ("stack", "collections", "path", "volume"),
    [
        pytest.param(
            {"data_collector_claim": "payloads"},
            COLLECTOR["collections"],
            f"{DATA_COLLECTOR_DIR}/cars/alice",
            {"name": "data-collector", "persistentVolumeClaim": {"claimName": "payloads"}},
            id="stack-claim",
        ),
        pytest.param(
            {"data_collector_url": "s3://bucket/lines/"},
            COLLECTOR["collections"],
            "s3://bucket/lines/cars/alice",
            None,
            id="stack-url",
        ),
        pytest.param(
            {"data_collector_url": "s3://bucket/lines"},
            {"request": {"enabled": True, "data": {"path": "gs://own/place"}}},
            "gs://own/place",
            None,
            id="collection-data-path-wins",
        ),
        pytest.param(
            {},
            {"model_inputs": {"enabled": "True", "data": {"path": "azureml://datastores/x/paths/y"}}},
            f"{DATA_COLLECTOR_DIR}/cars/alice",
            {"name": "data-collector", "emptyDir": {"sizeLimit": "1Gi"}},
            id="azureml-path-ignored",
        ),
    ],
)
def test_the_store_comes_from_the_collection_then_the_stack(stack, collections, path, volume):
    collector, got_volume, mount = _pod(
        dataclasses.replace(SETTINGS, **stack), data_collector={"collections": collections}
    )
    assert (collector["ENDPOINTS_DATA_COLLECTOR_PATH"], got_volume) == (path, volume)
    assert (mount is None) == (volume is None)


def test_nothing_without_an_enabled_payload_collection():
    for spec in (
        None,
        {"collections": {"model_inputs": {"enabled": "False"}}},
        {"collections": {"my_features": {"enabled": "True"}}},
    ):
        assert _pod(SETTINGS, data_collector=spec) == ({}, None, None)
    custom = deployment(data_collector={"collections": {"my_features": {"enabled": "True"}}})
    assert custom.notes()[:1] == [
        "data_collector.collections: my_features: custom logging is the scoring script's own Collector"
        " (azureml-ai-monitoring); the platform writes only model_inputs, request, model_outputs, response"
    ]
