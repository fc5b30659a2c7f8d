"""``EndpointNamespace``: the stack's namespace with Pod Security ``restricted`` enforced and default-deny ingress."""

from __future__ import annotations

import pulumi

from components.builders.namespace import build_default_deny, build_namespace
from components.kubernetes_objects import create_object

TYPE_TOKEN = "endpoints:endpoint_namespace:EndpointNamespace"


class EndpointNamespace(pulumi.ComponentResource):
    """Namespace + default-deny ingress NetworkPolicy (each endpoint then admits its gateway only).

    Outputs:
        namespace: The namespace name.
    """

    namespace: pulumi.Output[str]

    def __init__(self, name: str, namespace: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        ns = create_object(f"{name}-ns", build_namespace(namespace), pulumi.ResourceOptions(parent=self))
        create_object(
            f"{name}-default-deny", build_default_deny(namespace), pulumi.ResourceOptions(parent=self, depends_on=[ns])
        )
        self.namespace = pulumi.Output.from_input(namespace)
        self.register_outputs({"namespace": self.namespace})
