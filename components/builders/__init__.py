"""Pure builders: validated specs in, Kubernetes objects (camelCase dicts, as the API server takes them) out.

No module here imports ``pulumi`` or touches the network; the components, the offline plan, the policy tests and
promotion all call them.

- :mod:`components.builders.common`: names (``k8s_name``), labels, ``ClusterSettings``, ``GatewayRef``.
- :mod:`components.builders.keys`: an endpoint's keys Secret (name, data keys, mount folder), online and batch.
- :mod:`components.builders.pod_security`: the restricted ``securityContext`` of every pod.
- :mod:`components.builders.online`: endpoint Secret/HTTPRoute/NetworkPolicy, deployment Deployment/Service/
  PDB/HPA or ScaledObject/egress NetworkPolicy, URIs.
- :mod:`components.builders.batch_options`: ``BatchOptions``, the batch instance type default, the shared volume.
- :mod:`components.builders.batch_queues`: Kueue queues and quotas (LocalQueue, the stack's ClusterQueue),
  PriorityClasses, a deployment's priority.
- :mod:`components.builders.batch_job`: a batch deployment's Indexed Job template, its ConfigMap, the runners'
  egress policy.
- :mod:`components.builders.batch_job_api`: a batch endpoint's job API (objects, PDB, HTTPRoute, policies).
- :mod:`components.builders.compute`: pool scheduling, GPU ResourceQuota, Kueue ResourceFlavor/ClusterQueue/
  LocalQueue, PriorityClass.
- :mod:`components.builders.namespace`: restricted Namespace and default-deny ingress.
- :mod:`components.builders.image`: image builds (``image_build_args``, ``batch_base_image_build``,
  ``batch_deployment_build``), all from the recipes of ``endpoints.images``.
- :mod:`components.builders.stack_config`: the stack's config schema (``StackSettings``, overrides) and the config
  keys derived from it (``CONFIG_KEYS``, what ``Pulumi.yaml`` declares).
- :mod:`components.builders.stack_resolve`: endpoint folders resolved with the stack's overrides and images
  (``resolve_stack``).
- :mod:`components.builders.stack`: the one walk over a resolved stack (``walk_stack``: what the Pulumi program
  creates) and the whole stack rendered offline from it (``render_stack``: the plan).
"""

from __future__ import annotations
