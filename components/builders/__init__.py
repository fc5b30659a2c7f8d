"""Pure builders: validated specs in, Kubernetes objects (camelCase dicts, as the API server takes them) out.

No module here imports ``pulumi`` or touches the network; the components, the offline plan, the policy tests and
promotion all call them.

- :mod:`components.builders.common`: names (``k8s_name``), labels, ``ClusterSettings``, ``GatewayRef``.
- :mod:`components.builders.online`: endpoint Secret/HTTPRoute/NetworkPolicy, deployment Deployment/Service/
  PDB/HPA or ScaledObject/egress NetworkPolicy, URIs.
- :mod:`components.builders.compute`: pool scheduling, GPU ResourceQuota, Kueue ResourceFlavor/ClusterQueue/
  LocalQueue, PriorityClass.
- :mod:`components.builders.namespace`: restricted Namespace and default-deny ingress.
- :mod:`components.builders.image`: the per-deployment image build (``image_build_args``).
- :mod:`components.builders.stack`: stack config keys, settings, overrides, ``render_stack``.
- :mod:`components.builders.batch`: batch endpoint/deployment objects (batch components).
"""

from __future__ import annotations
