"""Specs written from Azure's documented schemas load, with Azure's documented defaults filled in."""

from __future__ import annotations

from pathlib import Path

from endpoints.loader import load_spec
from endpoints.specs import (
    BatchDeployment,
    BatchEndpoint,
    DefaultScaleSettings,
    OnlineDeployment,
    OnlineEndpoint,
    TargetUtilizationScaleSettings,
)

FIXTURES = Path(__file__).parent / "fixtures" / "azure"


def test_managed_online_endpoint_defaults() -> None:
    spec = load_spec(FIXTURES / "online" / "managed-endpoint.yml")
    assert isinstance(spec, OnlineEndpoint)
    assert spec.name == "my-endpoint"
    assert spec.auth_mode == "key"
    assert spec.traffic == {}
    assert spec.mirror_traffic == {}
    assert spec.public_network_access == "enabled"


def test_managed_online_deployment_defaults() -> None:
    spec = load_spec(FIXTURES / "online" / "managed-deployment.yml")
    assert isinstance(spec, OnlineDeployment)
    assert spec.type == "managed"
    assert spec.instance_type == "Standard_DS3_v2"
    assert spec.instance_count == 1
    rs = spec.request_settings
    assert (rs.request_timeout_ms, rs.max_concurrent_requests_per_instance, rs.max_queue_wait_ms) == (5000, 1, 500)
    for probe in (spec.liveness_probe, spec.readiness_probe):
        assert (probe.initial_delay, probe.period, probe.timeout) == (10, 10, 2)
        assert (probe.success_threshold, probe.failure_threshold) == (1, 30)
    assert spec.scale_settings == DefaultScaleSettings(type="default")
    assert spec.egress_public_network_access == "enabled"
    assert spec.app_insights_enabled is False
    assert spec.source_path == str(FIXTURES / "online" / "managed-deployment.yml")


def test_kubernetes_online_deployment() -> None:
    spec = load_spec(FIXTURES / "online" / "kubernetes-deployment.yml")
    assert isinstance(spec, OnlineDeployment)
    assert spec.type == "kubernetes"
    assert spec.instance_type is None
    assert spec.effective_instance_type == "defaultinstancetype"
    assert spec.request_settings.request_timeout_ms == 3000
    assert spec.request_settings.max_concurrent_requests_per_instance == 1
    assert spec.resources is not None
    assert spec.resources.requests == {"cpu": "0.1", "memory": "0.1Gi"}
    assert spec.resources.limits == {"cpu": "0.2", "memory": "200Mi", "nvidia.com/gpu": "1"}
    assert spec.scale_settings == TargetUtilizationScaleSettings(
        type="target_utilization",
        min_instances=1,
        max_instances=3,
        polling_interval=10,
        target_utilization_percentage=70,
    )
    assert spec.notes() == [
        "app_insights_enabled: Application Insights is not available; scrape /metrics and read the logs",
        "environment.image: 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest' is one of Azure's curated"
        " inference images; on the cluster the deployment image is built on the stack's serving image instead (stack"
        " setting ml-endpoints:baseImageRedirects); local mode runs in this machine's Python",
    ]


def test_batch_endpoint_defaults() -> None:
    spec = load_spec(FIXTURES / "batch" / "batch-endpoint.yml")
    assert isinstance(spec, BatchEndpoint)
    assert spec.auth_mode == "aad_token"
    assert spec.defaults.deployment_name is None
    assert spec.tags == {"type": "deep-learning"}


def test_batch_deployment_settings() -> None:
    spec = load_spec(FIXTURES / "batch" / "batch-deployment.yml")
    assert isinstance(spec, BatchDeployment)
    assert spec.compute_pool == "batch-cluster"
    assert spec.resources.instance_count == 1
    s = spec.settings
    assert (s.max_concurrency_per_instance, s.mini_batch_size, s.output_action) == (2, 10, "append_row")
    assert (s.output_file_name, s.error_threshold, s.logging_level) == ("predictions.csv", -1, "info")
    assert (s.retry_settings.max_retries, s.retry_settings.timeout) == (3, 30)


def test_batch_deployment_root_level_settings_and_defaults() -> None:
    spec = load_spec(FIXTURES / "batch" / "batch-deployment-root-settings.yml")
    assert isinstance(spec, BatchDeployment)
    s = spec.settings
    assert (s.mini_batch_size, s.max_concurrency_per_instance, s.output_file_name) == (5, 4, "out.csv")
    assert (s.output_action, s.error_threshold, s.logging_level) == ("append_row", -1, "info")
    assert (s.retry_settings.max_retries, s.retry_settings.timeout) == (3, 30)
    assert spec.resources.instance_count == 1
