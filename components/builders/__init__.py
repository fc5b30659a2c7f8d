"""Pure builders: validated specs in, Kubernetes objects (camelCase dicts, as the API server takes them) out.

No module here imports ``pulumi`` or touches the network; the components, the offline plan, the policy tests and
promotion all call them.

- :mod:`components.builders.common`: names (``k8s_name``), labels, ``ClusterSettings``, ``GatewayRef``.
- :mod:`components.builders.online`: endpoint Secret/HTTPRoute/NetworkPolicy, deployment Deployment/Service/
  PDB/HPA or ScaledObject/egress NetworkPolicy, URIs.
- :mod:`components.builders.compute`: pool scheduling, GPU ResourceQuota, Kueue ResourceFlavor/ClusterQueue/
  LocalQueue, PriorityClass.
- :mod:`components.builders.namespace`: restricted Namespace and default-deny ingress.
- :mod:`components.builders.image`: image builds (``image_build_args``, ``batch_base_image_build``,
  ``batch_deployment_build``), all from the recipes of ``endpoints.images``.
- :mod:`components.builders.stack`: stack config keys, settings, overrides, online and batch endpoints resolved
  (``resolve_stack``), ``render_stack``.
- :mod:`components.builders.batch`: batch endpoint/deployment objects, the stack's ClusterQueue and PriorityClasses,
  the batch instance type default.
"""

from __future__ import annotations
