"""``OnlineEndpoint``: keys Secret (components.endpoint_keys), Gateway API HTTPRoute, ingress NetworkPolicy, URIs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.builders.common import ClusterSettings
from components.builders.keys import build_keys_secret
from components.builders.online import (
    build_http_route,
    build_ingress_policy,
    build_monitoring_objects,
    endpoint_names,
    scoring_uri,
    swagger_uri,
)
from components.builders.stack_config import KeyRotation
from components.endpoint_keys import create_endpoint_keys
from components.kubernetes_objects import create_object
from endpoints.specs import OnlineDeployment as OnlineDeploymentSpec
from endpoints.specs import OnlineEndpoint as OnlineEndpointSpec

TYPE_TOKEN = "endpoints:online_endpoint:OnlineEndpoint"
# Keys are 48 and signing keys 64 alphanumerics (~285 and ~380 bits): long enough for HS256 and for keys.


@dataclass
class OnlineEndpointArgs:
    """Inputs of an :class:`OnlineEndpoint`.

    Attributes:
        endpoint: The validated endpoint spec (stack overrides applied).
        deployments: Its deployment specs (the route has one rule per deployment).
        settings: Stack settings (namespace, domain, gateways).
        rotation: Key rotation markers; changing one regenerates only that key (default generation "0").
    """

    endpoint: OnlineEndpointSpec
    deployments: list[OnlineDeploymentSpec]
    settings: ClusterSettings
    rotation: KeyRotation = field(default_factory=KeyRotation)


class OnlineEndpoint(pulumi.ComponentResource):
    """An Azure-ML-style online endpoint on Kubernetes.

    Outputs:
        scoring_uri: ``https://<endpoint>.<domain>/score``.
        swagger_uri: ``https://<endpoint>.<domain>/swagger.json`` ('' for a custom-container primary deployment).
        primary_key, secondary_key: Secret outputs.
        secret_name: Name of the Kubernetes Secret holding the keys (deployments mount it).
        route_name: Name of the HTTPRoute.
    """

    scoring_uri: pulumi.Output[str]
    swagger_uri: pulumi.Output[str]
    primary_key: pulumi.Output[str]
    secondary_key: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    route_name: pulumi.Output[str]

    def __init__(self, name: str, args: OnlineEndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        ep, settings = args.endpoint, args.settings
        # Build every dict first: a spec problem fails before any resource is registered.
        route = build_http_route(ep, args.deployments, settings)
        ingress = build_ingress_policy(ep, settings)
        monitoring = build_monitoring_objects(ep, settings)
        names = endpoint_names(ep.name)
        child = pulumi.ResourceOptions(parent=self)

        keys = create_endpoint_keys(self, name, args.rotation, lambda p, s, k: build_keys_secret(ep, settings, p, s, k))
        self.primary_key, self.secondary_key, self.secret = keys.primary, keys.secondary, keys.secret
        self.route = create_object(f"{name}-route", route, child)
        self.ingress_policy = create_object(f"{name}-ingress", ingress, child)
        self.monitoring = [create_object(f"{name}-{obj['kind'].lower()}", obj, child) for obj in monitoring]

        self.scoring_uri = pulumi.Output.from_input(scoring_uri(ep, args.deployments, settings))
        self.swagger_uri = pulumi.Output.from_input(swagger_uri(ep, args.deployments, settings))
        self.secret_name = pulumi.Output.from_input(names.secret)
        self.route_name = pulumi.Output.from_input(names.route)
        self.register_outputs(
            {
                "scoring_uri": self.scoring_uri,
                "swagger_uri": self.swagger_uri,
                "primary_key": self.primary_key,
                "secondary_key": self.secondary_key,
                "secret_name": self.secret_name,
                "route_name": self.route_name,
            }
        )
