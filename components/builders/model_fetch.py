"""The init container that downloads a remote model (``azureml:``-less URIs: s3://, gs://, https://, ...) into the
pod's model volume before the scoring or runner container starts: one home for online deployments and batch jobs."""

from __future__ import annotations

from typing import Any

from components.builders.common import EPHEMERAL_STORAGE_WORKLOAD, ClusterSettings, with_ephemeral_storage
from components.builders.pod_security import restricted_container_security


def model_fetch_command(uri: str, dest: str) -> list[str]:
    """Command of the init container that downloads a remote model into the shared model volume."""
    return ["python", "-m", "serving.fetch_model", "--uri", uri, "--dest", dest]


def fetch_model_init_container(image: str, uri: str, model_dir: str, settings: ClusterSettings) -> dict[str, Any]:
    """The ``fetch-model`` init container: ``uri`` into the ``model`` volume mounted at ``model_dir``."""
    return {
        "name": "fetch-model",
        "image": image,
        "command": model_fetch_command(uri, model_dir),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [{"name": "model", "mountPath": model_dir}, {"name": "tmp", "mountPath": "/tmp"}],
        "resources": with_ephemeral_storage(
            {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            EPHEMERAL_STORAGE_WORKLOAD,
        ),
        "securityContext": restricted_container_security(settings),
    }
