"""Small spec factories for builder and component tests (validated through the real pydantic models)."""

from __future__ import annotations

from typing import Any

from components.builders.common import ClusterSettings
from endpoints.catalog import InstanceCatalog, InstanceType
from endpoints.specs import OnlineDeployment, OnlineEndpoint

CATALOG = InstanceCatalog.default()
DIGEST = "registry.example.com/ml/img@sha256:" + "ab" * 32


def endpoint(name: str = "cars", **fields: Any) -> OnlineEndpoint:
    """An endpoint spec (key auth, no traffic unless given)."""
    return OnlineEndpoint.model_validate({"name": name, **fields})


def deployment(name: str = "alice", endpoint_name: str = "cars", **fields: Any) -> OnlineDeployment:
    """A managed deployment with scoring code and a local model on Standard_DS3_v2 unless overridden."""
    doc: dict[str, Any] = {
        "name": name,
        "endpoint_name": endpoint_name,
        "model": {"path": "../models/m"},
        "code_configuration": {"code": "../code", "scoring_script": "score.py"},
        "environment": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"},
        "instance_type": "Standard_DS3_v2",
    }
    doc.update(fields)
    return OnlineDeployment.model_validate(doc, context={"catalog": CATALOG})


def custom_deployment(name: str = "triton", endpoint_name: str = "cars", **fields: Any) -> OnlineDeployment:
    """A kubernetes deployment of a custom container (Triton-like routes on port 8000)."""
    doc: dict[str, Any] = {
        "name": name,
        "endpoint_name": endpoint_name,
        "type": "kubernetes",
        "environment": {
            "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
            "inference_config": {
                "liveness_route": {"port": 8000, "path": "/v2/health/live"},
                "readiness_route": {"port": 8002, "path": "/v2/health/ready"},
                "scoring_route": {"port": 8000, "path": "/v2/models/cars/infer"},
            },
        },
        "instance_type": "Standard_NC4as_T4_v3",
    }
    doc.update(fields)
    return OnlineDeployment.model_validate(doc, context={"catalog": CATALOG})


def instance(name: str) -> InstanceType:
    """A catalog entry."""
    return CATALOG.get(name)


SETTINGS = ClusterSettings(namespace="ml-test", domain="test.example.com", egress_allow_cidrs=("10.20.0.0/16",))
