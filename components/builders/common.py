"""Names, labels and stack-wide settings shared by every builder (pure: no pulumi, no network)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from endpoints.errors import Problem, SpecError
from endpoints.specs import OnlineDeployment, Probe

# Label keys put on every object so that selectors, NetworkPolicies and `kubectl get -l` find them.
LABEL_PREFIX = "ml-endpoints.io"
ENDPOINT_LABEL = f"{LABEL_PREFIX}/endpoint"
DEPLOYMENT_LABEL = f"{LABEL_PREFIX}/deployment"
KIND_LABEL = f"{LABEL_PREFIX}/kind"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "ml-endpoints"}
# Header Azure ML uses to pin a request to one deployment of an endpoint.
DEPLOYMENT_HEADER = "azureml-model-deployment"

_MAX_NAME = 63


def k8s_name(*parts: str, max_len: int = _MAX_NAME) -> str:
    """Join name parts into a DNS-1035 label (lower case, <= ``max_len`` characters, default 63).

    Long names keep a readable prefix and end in 8 hex characters of a hash of the full name, so two different
    long names never truncate to the same label.
    """
    full = "-".join(p.lower() for p in parts if p)
    full = re.sub(r"[^a-z0-9-]", "-", full).strip("-")
    if len(full) <= max_len:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: max_len - 9].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class GatewayRef:
    """A Gateway API ``Gateway`` the endpoint routes attach to."""

    name: str
    namespace: str

    @classmethod
    def parse(cls, text: str, where: str) -> GatewayRef:
        """Read ``namespace/name``.

        Raises:
            SpecError: the text is not ``namespace/name``; the message names ``where`` and the value.
        """
        ns, sep, name = text.partition("/")
        if not sep or not ns or not name or "/" in name:
            raise SpecError(f"{where}: got {text!r}; write the gateway as <namespace>/<name>")
        return cls(name=name, namespace=ns)


@dataclass(frozen=True)
class ClusterSettings:
    """What the builders need to know about the cluster and the stack (read from stack config).

    Attributes:
        namespace: Namespace of every endpoint object (default ``ml-endpoints``).
        domain: DNS domain; an endpoint is served at ``<endpoint>.<domain>``.
        public_gateway: Gateway for ``public_network_access: enabled`` endpoints.
        private_gateway: Gateway for ``public_network_access: disabled`` endpoints (internal load balancer).
        keda: Scale ``target_utilization`` deployments with a KEDA ScaledObject instead of an HPA (default False).
        keda_prometheus_url: Prometheus that KEDA's request-rate trigger queries.
        keda_requests_per_instance: Requests/s per instance the request-rate trigger aims for (default 10).
        egress_allow_cidrs: CIDRs a deployment with ``egress_public_network_access: disabled`` may still reach.
        monitoring_namespace: Namespace whose pods may scrape ``/metrics`` (empty: none).
        monitoring: Render a PodMonitor, a PrometheusRule and a Grafana dashboard ConfigMap per online endpoint
            (``components.builders.monitoring``; needs the Prometheus Operator's CRDs). Default False.
        pool_label: Node label naming the compute pool a node belongs to.
        pin_cpu_pools: Also put a pool node selector on CPU deployments (default False: GPU pools only).
        oidc_issuer: Issuer for ``aad_token`` endpoints.
        oidc_audience: Audience for ``aad_token`` endpoints.
        oidc_jwks_url: JWKS URL for ``aad_token`` endpoints.
        scheme: URI scheme of scoring URIs (default ``https``: the gateway terminates TLS).
        run_as_user: UID of the serving containers (default 10001; the restricted profile needs >= 10000).
        image_pull_secret: Name of a docker-registry Secret in the namespace for private registries ('' none).
        service_account: Service account of the serving pods ('' the namespace default); e.g. one bound to a
            cloud identity (workload identity, IRSA) that may read the model store. Its token is still not
            mounted into the scoring container.
        triton_image: Triton Inference Server image of ``triton_model`` deployments that name no
            ``environment.image``.
        data_collector_claim: PersistentVolumeClaim that data_collector lines are written to ('' an emptyDir).
        data_collector_url: fsspec URL that data_collector lines are written to instead of a volume ('' none).
        api_server_cidrs: Where the Kubernetes API server listens, for the batch job APIs' egress policy (TCP 443
            and 6443); empty: any address on those two ports.
    """

    namespace: str = "ml-endpoints"
    domain: str = "endpoints.example.com"
    public_gateway: GatewayRef = field(default_factory=lambda: GatewayRef("public", "gateway-system"))
    private_gateway: GatewayRef = field(default_factory=lambda: GatewayRef("private", "gateway-system"))
    keda: bool = False
    keda_prometheus_url: str = "http://prometheus.monitoring.svc:9090"
    keda_requests_per_instance: int = 10
    egress_allow_cidrs: tuple[str, ...] = ()
    monitoring_namespace: str = ""
    monitoring: bool = False
    pool_label: str = f"{LABEL_PREFIX}/pool"
    pin_cpu_pools: bool = False
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    scheme: str = "https"
    run_as_user: int = 10001
    image_pull_secret: str = ""
    service_account: str = ""
    triton_image: str = "nvcr.io/nvidia/tritonserver:24.08-py3"
    api_server_cidrs: tuple[str, ...] = ()
    data_collector_claim: str = ""
    data_collector_url: str = ""

    def ingress_peers(self, gateway: GatewayRef) -> list[dict[str, object]]:
        """NetworkPolicy ``from`` peers of an endpoint's pods: the gateway's namespace, and monitoring if set."""
        names = [gateway.namespace] + ([self.monitoring_namespace] if self.monitoring_namespace else [])
        return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}} for ns in names]


_LABEL_SAFE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$")


def check_name(kind: str, name: str) -> str:
    """Refuse a spec name that cannot be a Kubernetes label value and DNS label (Azure allows a trailing hyphen).

    Raises:
        SpecError: naming the kind and the value.
    """
    if not _LABEL_SAFE.match(name):
        raise SpecError(
            f"{kind} name {name!r}: ends with a hyphen; on Kubernetes it becomes a label value and a DNS name,"
            " which must end with a letter or digit"
        )
    return name


def endpoint_labels(endpoint_name: str) -> dict[str, str]:
    """Labels of every object of an endpoint.

    Raises:
        SpecError: the name cannot be a label value (see :func:`check_name`).
    """
    return {**MANAGED_BY, ENDPOINT_LABEL: check_name("endpoint", endpoint_name)}


def deployment_labels(endpoint_name: str, deployment_name: str) -> dict[str, str]:
    """Labels of every object of a deployment (a superset of the endpoint's)."""
    return {**endpoint_labels(endpoint_name), DEPLOYMENT_LABEL: check_name("deployment", deployment_name)}


def selector_labels(endpoint_name: str, deployment_name: str) -> dict[str, str]:
    """The stable subset used in selectors (selectors of Deployments are immutable: keep them minimal)."""
    return {ENDPOINT_LABEL: endpoint_name, DEPLOYMENT_LABEL: deployment_name}


def metadata(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, object]:
    """``metadata`` of a namespaced (or, with ``namespace=None``, cluster-scoped) object."""
    out: dict[str, object] = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        out["namespace"] = namespace
    return out


def add_optional_pod_fields(
    pod_spec: dict[str, Any],
    settings: ClusterSettings,
    init_containers: list[dict[str, Any]],
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
) -> None:
    """Set the pod fields that are present only when they have content (online Deployments and batch Jobs alike).

    The service account may be bound to a cloud identity that reads the model store (its token stays unmounted).
    """
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if settings.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": settings.image_pull_secret}]
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations


# Ephemeral storage of every container (requests and limits; kubelet evicts a pod past its limits, so a runaway
# /tmp or log cannot fill the node's disk). Large enough for the emptyDirs each pod mounts (a fetched model, /tmp).
EPHEMERAL_STORAGE_SMALL = ("128Mi", "1Gi")  # the job API, init containers without a model
EPHEMERAL_STORAGE_WORKLOAD = ("1Gi", "20Gi")  # scoring and runner containers, model fetchers


def with_ephemeral_storage(resources: dict[str, Any], sizes: tuple[str, str]) -> dict[str, Any]:
    """``resources`` with an ``ephemeral-storage`` request and limit added where the spec set none."""
    request, limit = sizes
    out = {k: dict(v) for k, v in resources.items()}
    requests, limits = out.setdefault("requests", {}), out.setdefault("limits", {})
    if "ephemeral-storage" not in requests and "ephemeral-storage" not in limits:
        requests["ephemeral-storage"], limits["ephemeral-storage"] = request, limit
    elif "ephemeral-storage" not in limits:
        limits["ephemeral-storage"] = requests["ephemeral-storage"]
    elif "ephemeral-storage" not in requests:
        requests["ephemeral-storage"] = limits["ephemeral-storage"]
    return out


def dns_egress_rule() -> dict[str, Any]:
    """NetworkPolicy egress rule: the cluster DNS (kube-dns / CoreDNS in kube-system), UDP and TCP 53."""
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


# ------------------------------------------------------------------------------------- serving containers

# Port the serving process listens on inside the container (Azure's inference server uses 5001 too).
SERVING_PORT = 5001
# URI schemes of a model fetched at start instead of being baked into the image.
REMOTE_MODEL_SCHEMES = ("s3://", "az://", "abfs://", "abfss://", "gs://", "gcs://", "https://", "http://", "models:/")


def spec_error(spec: Any, path: str, message: str) -> SpecError:
    """A :class:`SpecError` located in the spec's file (when it was read from one) at field ``path``."""
    return SpecError([Problem(getattr(spec, "source_path", None), None, path, message)])


def remote_model_uri(deployment: OnlineDeployment) -> str | None:
    """The model's URI when it is fetched at start (s3/az/gs/https/``models:/``); ``None`` when baked in or absent.

    Raises:
        SpecError: the model is still an unresolved ``azureml:`` reference.
    """
    model = deployment.model
    if model is None:
        return None
    if isinstance(model, str):
        raise spec_error(
            deployment, "model", f"got {model!r}, an unresolved reference; resolve it with the project's registry first"
        )
    return model.path if model.path.startswith(REMOTE_MODEL_SCHEMES) else None


def http_probe(spec: Probe, path: str, port: int | str, *, liveness: bool) -> dict[str, Any]:
    """A Kubernetes HTTP probe from a deployment's probe settings (Azure's ``liveness_probe``/``readiness_probe``)."""
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": spec.initial_delay,
        "periodSeconds": spec.period,
        "timeoutSeconds": spec.timeout,
        # Kubernetes rejects a liveness successThreshold other than 1.
        "successThreshold": 1 if liveness else spec.success_threshold,
        "failureThreshold": spec.failure_threshold,
    }
