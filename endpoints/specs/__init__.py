"""Pydantic models of the four Azure ML CLI v2 resources this toolkit reads."""

from __future__ import annotations

from endpoints.specs.batch import BatchDeployment, BatchEndpoint, BatchSettings, RetrySettings
from endpoints.specs.common import CodeConfiguration, EnvironmentAsset, InferenceConfig, ModelAsset, Route
from endpoints.specs.online import (
    DefaultScaleSettings,
    OnlineDeployment,
    OnlineEndpoint,
    Probe,
    RequestSettings,
    Resources,
    TargetUtilizationScaleSettings,
)

AnySpec = OnlineEndpoint | OnlineDeployment | BatchEndpoint | BatchDeployment

__all__ = [
    "AnySpec",
    "BatchDeployment",
    "BatchEndpoint",
    "BatchSettings",
    "CodeConfiguration",
    "DefaultScaleSettings",
    "EnvironmentAsset",
    "InferenceConfig",
    "ModelAsset",
    "OnlineDeployment",
    "OnlineEndpoint",
    "Probe",
    "RequestSettings",
    "Resources",
    "RetrySettings",
    "Route",
    "TargetUtilizationScaleSettings",
]
