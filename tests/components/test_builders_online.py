"""Pure builder tests: specs in, exact Kubernetes objects out; every object validated against its schema."""

from __future__ import annotations

from typing import Any

import pytest
from specs_factory import DIGEST, SETTINGS, custom_deployment, deployment, endpoint, instance

from components.builders.common import ClusterSettings, GatewayRef, k8s_name
from components.builders.keys import build_keys_secret
from components.builders.online import (
    ENDPOINTS_ENV_VARS,
    build_autoscaler,
    build_deployment,
    build_deployment_objects,
    build_egress_policy,
    build_endpoint_objects,
    build_http_route,
    build_ingress_policy,
    build_pdb,
    check_unique_names,
    drain_timeout_s,
    scoring_uri,
    swagger_uri,
    termination_grace_period_s,
)
from components.k8s_schema import validate_objects
from endpoints.errors import SpecError


def _env(dep_obj: dict[str, Any]) -> dict[str, str]:
    container = dep_obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def _container(dep_obj: dict[str, Any]) -> dict[str, Any]:
    return dep_obj["spec"]["template"]["spec"]["containers"][0]


# ---------------------------------------------------------------------------------------------------------- route


def test_route_has_one_pinned_rule_per_deployment_and_a_weighted_default() -> None:
    ep = endpoint(traffic={"alice": 90, "bob": 10})
    route = build_http_route(ep, [deployment("bob"), deployment("alice")], SETTINGS)
    assert route["metadata"] == {
        "name": "cars",
        "namespace": "ml-test",
        "labels": {
            "app.kubernetes.io/managed-by": "pulumi",
            "app.kubernetes.io/part-of": "ml-endpoints",
            "ml-endpoints.io/endpoint": "cars",
        },
    }
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateway-system"}
    ]
    assert spec["hostnames"] == ["cars.test.example.com"]
    pins = spec["rules"][:2]
    assert [r["matches"][0]["headers"] for r in pins] == [
        [{"type": "Exact", "name": "azureml-model-deployment", "value": "alice"}],
        [{"type": "Exact", "name": "azureml-model-deployment", "value": "bob"}],
    ]
    assert [r["backendRefs"] for r in pins] == [
        [{"group": "", "kind": "Service", "name": "cars-alice", "port": 80}],
        [{"group": "", "kind": "Service", "name": "cars-bob", "port": 80}],
    ]
    default = spec["rules"][2]
    assert default["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert default["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "cars-alice", "port": 80, "weight": 90},
        {"group": "", "kind": "Service", "name": "cars-bob", "port": 80, "weight": 10},
    ]
    assert "filters" not in default
    # request timeout 5000 + queue wait 500 -> 6 s, plus 5 s margin
    assert default["timeouts"] == {"request": "11s"}
    assert validate_objects([route]) == []


def test_route_mirror_filter_carries_percent_and_pins_are_not_mirrored() -> None:
    ep = endpoint(traffic={"alice": 100, "bob": 0}, mirror_traffic={"bob": 10})
    route = build_http_route(ep, [deployment("alice"), deployment("bob")], SETTINGS)
    default = route["spec"]["rules"][-1]
    assert default["backendRefs"] == [{"group": "", "kind": "Service", "name": "cars-alice", "port": 80, "weight": 100}]
    assert default["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": "cars-bob", "port": 80},
                "percent": 10,
            },
        }
    ]
    assert all("filters" not in r for r in route["spec"]["rules"][:-1])
    assert validate_objects([route]) == []


def test_route_without_live_traffic_has_no_default_rule() -> None:
    route = build_http_route(endpoint(), [deployment("alice")], SETTINGS)
    assert len(route["spec"]["rules"]) == 1
    assert route["spec"]["rules"][0]["matches"][0]["headers"][0]["value"] == "alice"


def test_private_endpoint_attaches_to_private_gateway() -> None:
    settings = ClusterSettings(private_gateway=GatewayRef("internal", "gw"))
    route = build_http_route(endpoint(public_network_access="disabled"), [deployment()], settings)
    assert route["spec"]["parentRefs"][0] | {} == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "internal",
        "namespace": "gw",
    }
    policy = build_ingress_policy(endpoint(public_network_access="disabled"), settings)
    assert policy["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gw"}}}
    ]


def test_route_rejects_traffic_to_unknown_deployment() -> None:
    with pytest.raises(SpecError) as e:
        build_http_route(endpoint(traffic={"carol": 100}), [deployment("alice")], SETTINGS)
    assert str(e.value) == "<spec>: traffic.carol: no deployment named 'carol'; deployments: ['alice']"


def test_route_rejects_more_deployments_than_rules() -> None:
    deps = [deployment(f"dep{i:02d}") for i in range(16)]
    with pytest.raises(SpecError) as e:
        build_http_route(endpoint(), deps, SETTINGS)
    assert str(e.value) == (
        "<spec>: endpoint cars: got 16 deployments; an HTTPRoute holds at most 15 (one rule each plus the default rule)"
    )


def test_route_timeout_covers_the_slowest_deployment() -> None:
    slow = deployment("slow", type="kubernetes", request_settings={"request_timeout_ms": 300000})
    route = build_http_route(endpoint(), [deployment("alice"), slow], SETTINGS)
    assert {r["timeouts"]["request"] for r in route["spec"]["rules"]} == {"306s"}


# -------------------------------------------------------------------------------------------------- endpoint objects


def test_keys_secret_holds_three_keys_placeholders_by_default() -> None:
    secret = build_keys_secret(endpoint(), SETTINGS)
    assert secret["metadata"]["name"] == "cars-keys"
    assert secret["stringData"] == {
        "primary": "<secret:primary>",
        "secondary": "<secret:secondary>",
        "token-signing-key": "<secret:token-signing-key>",
    }


def test_ingress_policy_admits_gateway_and_monitoring_namespaces_on_http_port() -> None:
    settings = ClusterSettings(monitoring_namespace="monitoring")
    policy = build_ingress_policy(endpoint(), settings)
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"ml-endpoints.io/endpoint": "cars"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
                ],
                "ports": [{"protocol": "TCP", "port": "http"}],
            }
        ],
    }


def test_uris() -> None:
    deps = [deployment("alice")]
    assert scoring_uri(endpoint(), deps, SETTINGS) == "https://cars.test.example.com/score"
    assert swagger_uri(endpoint(), deps, SETTINGS) == "https://cars.test.example.com/swagger.json"
    custom = [custom_deployment("triton")]
    ep = endpoint(traffic={"triton": 100})
    assert scoring_uri(ep, custom, SETTINGS) == "https://cars.test.example.com/v2/models/cars/infer"
    assert swagger_uri(ep, custom, SETTINGS) == ""


# ------------------------------------------------------------------------------------------------------ deployment


def test_deployment_pod_security_is_restricted() -> None:
    obj = build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    pod = obj["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert _container(obj)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in _container(obj)["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]


def test_deployment_probes_map_azure_fields() -> None:
    dep = deployment(
        liveness_probe={"initial_delay": 11, "period": 12, "timeout": 3, "failure_threshold": 4},
        readiness_probe={"initial_delay": 5, "period": 6, "timeout": 2, "success_threshold": 2, "failure_threshold": 3},
    )
    c = _container(build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    assert c["livenessProbe"] == {
        "httpGet": {"path": "/", "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": 11,
        "periodSeconds": 12,
        "timeoutSeconds": 3,
        "successThreshold": 1,
        "failureThreshold": 4,
    }
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 6,
        "timeoutSeconds": 2,
        "successThreshold": 2,
        "failureThreshold": 3,
    }
    assert c["ports"] == [{"name": "http", "containerPort": 5001, "protocol": "TCP"}]
    assert c["args"] == ["--host", "0.0.0.0", "--port", "5001"]


def test_deployment_resources_from_instance_type() -> None:
    c = _container(build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    # 4 vCPU / 14 GiB: requests 85 %, limits the full VM
    assert c["resources"] == {
        "requests": {"cpu": "3400m", "memory": "12185Mi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": "4000m", "memory": "14336Mi", "ephemeral-storage": "20Gi"},
    }


def test_deployment_resources_field_wins_and_limits_are_filled() -> None:
    dep = deployment(type="kubernetes", resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1}})
    c = _container(build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    assert c["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "20Gi"},
    }


def test_gpu_deployment_gets_gpu_limits_node_selector_and_toleration() -> None:
    dep = deployment("bob", instance_type="Standard_NC4as_T4_v3")
    obj = build_deployment(endpoint(), dep, instance("Standard_NC4as_T4_v3"), SETTINGS, DIGEST)
    c = _container(obj)
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    pod = obj["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"ml-endpoints.io/pool": "gpu-t4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_cpu_deployment_is_not_pinned_unless_asked() -> None:
    pod = build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST)["spec"]["template"][
        "spec"
    ]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    pinned = ClusterSettings(pin_cpu_pools=True)
    pod = build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), pinned, DIGEST)["spec"]["template"][
        "spec"
    ]
    assert pod["nodeSelector"] == {"ml-endpoints.io/pool": "cpu"}


def test_gpu_request_must_equal_limit() -> None:
    dep = deployment(type="kubernetes", resources={"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}})
    with pytest.raises(SpecError) as e:
        build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert str(e.value) == (
        "<spec>: resources: nvidia.com/gpu request '1' != limit '2'; GPUs are whole devices, set them equal"
    )


def test_env_is_exactly_the_production_layer_contract_plus_azure_variables() -> None:
    dep = deployment(
        request_settings={
            "request_timeout_ms": 3000,
            "max_concurrent_requests_per_instance": 4,
            "max_queue_wait_ms": 200,
        },
        environment_variables={"WORKER_COUNT": "2", "MY_FLAG": "on"},
    )
    env = _env(build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST))
    assert env == {
        "ENDPOINTS_AUTH_MODE": "key",
        "ENDPOINTS_KEYS_DIR": "/etc/endpoints/keys",
        "ENDPOINTS_TOKEN_SIGNING_KEY_FILE": "/etc/endpoints/keys/token-signing-key",
        "ENDPOINTS_ENDPOINT_NAME": "cars",
        "ENDPOINTS_REQUEST_TIMEOUT_MS": "3000",
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "4",
        "ENDPOINTS_MAX_QUEUE_WAIT_MS": "200",
        "ENDPOINTS_MAX_BODY_BYTES": "67108864",
        "ENDPOINTS_DRAIN_TIMEOUT_S": "30",
        "ENDPOINTS_KEEPALIVE_TIMEOUT_S": "65",
        "AML_APP_ROOT": "/var/azureml-app",
        "AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/model/1",
        "SERVICE_NAME": "cars",
        "SERVICE_VERSION": "alice",
        "AZUREML_ENTRY_SCRIPT": "score.py",
        "AZUREML_SOURCE_DIRECTORY": "/var/azureml-app",
        "WORKER_COUNT": "2",
        "MY_FLAG": "on",
    }
    assert {k for k in env if k.startswith("ENDPOINTS_")} <= set(ENDPOINTS_ENV_VARS)


def test_aad_token_env_needs_stack_oidc_settings() -> None:
    ep = endpoint(auth_mode="aad_token")
    with pytest.raises(SpecError) as e:
        build_deployment(ep, deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert str(e.value) == (
        "<spec>: auth_mode: aad_token needs stack config oidcIssuer, oidcAudience, oidcJwksUrl (ml-endpoints:<key>)"
    )
    oidc = ClusterSettings(
        oidc_issuer="https://login.example.com/",
        oidc_audience="api://cars",
        oidc_jwks_url="https://login.example.com/keys",
    )
    env = _env(build_deployment(ep, deployment(), instance("Standard_DS3_v2"), oidc, DIGEST))
    assert (
        env["ENDPOINTS_AUTH_MODE"],
        env["ENDPOINTS_OIDC_ISSUER"],
        env["ENDPOINTS_OIDC_AUDIENCE"],
        env["ENDPOINTS_OIDC_JWKS_URL"],
    ) == ("aad_token", "https://login.example.com/", "api://cars", "https://login.example.com/keys")


def test_user_env_cannot_override_platform_variables() -> None:
    dep = deployment(environment_variables={"ENDPOINTS_AUTH_MODE": "none"})
    with pytest.raises(SpecError) as e:
        build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert str(e.value) == (
        "<spec>: environment_variables.ENDPOINTS_AUTH_MODE: set by the platform from the spec; change the"
        " corresponding spec field instead"
    )


def test_keys_are_mounted_as_files_from_the_endpoint_secret() -> None:
    obj = build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    pod = obj["spec"]["template"]["spec"]
    assert {
        "name": "keys",
        "secret": {
            "secretName": "cars-keys",
            "defaultMode": 0o440,
            "items": [
                {"key": "primary", "path": "primary"},
                {"key": "secondary", "path": "secondary"},
                {"key": "token-signing-key", "path": "token-signing-key"},
            ],
        },
    } in pod["volumes"]
    assert {"name": "keys", "mountPath": "/etc/endpoints/keys", "readOnly": True} in _container(obj)["volumeMounts"]
    assert all("valueFrom" not in e for e in _container(obj)["env"])  # keys never in env vars


def test_grace_period_exceeds_drain_timeout() -> None:
    fast = deployment()
    assert (drain_timeout_s(fast), termination_grace_period_s(fast)) == (30, 45)
    slow = deployment(type="kubernetes", request_settings={"request_timeout_ms": 120000, "max_queue_wait_ms": 1000})
    assert (drain_timeout_s(slow), termination_grace_period_s(slow)) == (122, 137)
    obj = build_deployment(endpoint(), slow, instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 137
    assert _env(obj)["ENDPOINTS_DRAIN_TIMEOUT_S"] == "122"
    assert _container(obj)["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}


def test_remote_model_is_fetched_by_an_init_container() -> None:
    dep = deployment(model={"name": "cars", "version": "3", "path": "s3://models/cars/3"})
    obj = build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    pod = obj["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["name"] == "fetch-model"
    assert init["image"] == DIGEST
    assert init["command"] == [
        "python",
        "-m",
        "serving.fetch_model",
        "--uri",
        "s3://models/cars/3",
        "--dest",
        "/var/azureml-app/azureml-models/cars/3",
    ]
    assert {"name": "model", "mountPath": "/var/azureml-app/azureml-models/cars/3", "readOnly": True} in _container(
        obj
    )["volumeMounts"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    baked = build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert "initContainers" not in baked["spec"]["template"]["spec"]


def test_fixed_scale_sets_replicas_and_no_autoscaler() -> None:
    dep = deployment(instance_count=3)
    obj = build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert obj["spec"]["replicas"] == 3
    assert build_autoscaler(endpoint(), dep, SETTINGS) is None


def test_target_utilization_gives_an_hpa_and_leaves_replicas_to_it() -> None:
    dep = deployment(
        type="kubernetes",
        scale_settings={
            "type": "target_utilization",
            "min_instances": 2,
            "max_instances": 6,
            "target_utilization_percentage": 60,
            "polling_interval": 15,
        },
    )
    obj = build_deployment(endpoint(), dep, instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert "replicas" not in obj["spec"]
    hpa = build_autoscaler(endpoint(), dep, SETTINGS)
    assert hpa == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": obj["metadata"],
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cars-alice"},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
                }
            ],
        },
    }
    keda = build_autoscaler(endpoint(), dep, ClusterSettings(namespace="ml-test", keda=True))
    assert keda is not None and keda["kind"] == "ScaledObject"
    assert keda["spec"]["pollingInterval"] == 15
    assert (keda["spec"]["minReplicaCount"], keda["spec"]["maxReplicaCount"]) == (2, 6)
    assert keda["spec"]["triggers"][0] == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
    assert keda["spec"]["triggers"][1]["metadata"] == {
        "serverAddress": "http://prometheus.monitoring.svc:9090",
        "query": 'sum(rate(endpoints_requests_total{namespace="ml-test",pod=~"cars-alice-.*"}[1m]))',
        "threshold": "10",
    }
    assert validate_objects([hpa, keda]) == []


def test_pdb_never_blocks_every_eviction() -> None:
    for count in (1, 3):
        pdb = build_pdb(endpoint(), deployment(instance_count=count), SETTINGS)
        assert pdb["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in pdb["spec"]


def test_egress_policy_only_when_egress_disabled() -> None:
    assert build_egress_policy(endpoint(), deployment(), SETTINGS) is None
    policy = build_egress_policy(endpoint(), deployment(egress_public_network_access="disabled"), SETTINGS)
    assert policy is not None
    assert policy["metadata"]["name"] == "cars-alice-egress"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"ml-endpoints.io/endpoint": "cars", "ml-endpoints.io/deployment": "alice"}},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            },
            {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
        ],
    }


# ----------------------------------------------------------------------------------------------------------- names


def test_k8s_name_truncates_with_a_hash() -> None:
    assert k8s_name("Cars", "alice") == "cars-alice"
    long = k8s_name("a" * 32, "b" * 32)
    assert len(long) == 63
    assert long.startswith("a" * 32 + "-" + "b" * 21)
    assert long != k8s_name("a" * 32, "b" * 31 + "c")


def test_name_collisions_between_endpoints_are_refused() -> None:
    check_unique_names([("cars", "alice"), ("cars", "bob"), ("vans", "alice")])
    with pytest.raises(SpecError) as e:
        check_unique_names([("car-x", "bob"), ("car", "x-bob")])
    assert str(e.value) == (
        "<spec>: deployment car/x-bob: object name 'car-x-bob' is also the name of car-x/bob; rename one of the endpoints or"
        " deployments"
    )


# ------------------------------------------------------------------------------------------------- all validate


@pytest.mark.parametrize(
    ("dep", "itype", "settings"),
    [
        pytest.param(deployment(), "Standard_DS3_v2", SETTINGS, id="cpu"),
        pytest.param(
            deployment("bob", instance_type="Standard_NC4as_T4_v3", egress_public_network_access="disabled"),
            "Standard_NC4as_T4_v3",
            SETTINGS,
            id="gpu",
        ),
        pytest.param(
            deployment(
                type="kubernetes",
                model={"path": "https://example.com/m.tar.gz"},
                scale_settings={"type": "target_utilization", "max_instances": 3},
            ),
            "Standard_DS3_v2",
            SETTINGS,
            id="hpa-remote-model",
        ),
        pytest.param(
            deployment(type="kubernetes", scale_settings={"type": "target_utilization", "max_instances": 3}),
            "Standard_DS3_v2",
            ClusterSettings(keda=True),
            id="keda",
        ),
        pytest.param(custom_deployment(), "Standard_NC4as_T4_v3", SETTINGS, id="custom-container"),
    ],
)
def test_every_built_object_validates(dep: Any, itype: str, settings: ClusterSettings) -> None:
    ep = endpoint(traffic={dep.name: 100})
    objs = build_endpoint_objects(ep, [dep], settings) + build_deployment_objects(
        ep, dep, instance(itype), settings, DIGEST
    )
    assert validate_objects(objs) == []


def test_private_registry_and_service_account() -> None:
    settings = ClusterSettings(image_pull_secret="regcred", service_account="model-reader")
    pod = build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), settings, DIGEST)["spec"]["template"][
        "spec"
    ]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "model-reader"
    assert pod["automountServiceAccountToken"] is False
    plain = build_deployment(endpoint(), deployment(), instance("Standard_DS3_v2"), SETTINGS, DIGEST)
    assert "imagePullSecrets" not in plain["spec"]["template"]["spec"]
    assert "serviceAccountName" not in plain["spec"]["template"]["spec"]


def test_monitoring_setting_adds_pod_monitor_rule_and_dashboard():
    from components.builders.common import ClusterSettings
    from components.builders.online import build_endpoint_objects
    from components.builders.stack_config import settings_from_config

    ep, dep = endpoint(), deployment()
    off = build_endpoint_objects(ep, [dep], ClusterSettings())
    assert [o["kind"] for o in off] == ["Secret", "HTTPRoute", "NetworkPolicy"]
    on = build_endpoint_objects(ep, [dep], settings_from_config({"monitoring": True}).cluster())
    assert [(o["kind"], o["metadata"]["name"]) for o in on[3:]] == [
        ("PodMonitor", "cars-metrics"),
        ("PrometheusRule", "cars-slo"),
        ("ConfigMap", "cars-dashboard"),
    ]
