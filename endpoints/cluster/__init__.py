"""A throwaway Kubernetes control plane on 127.0.0.1: ``endpoints cluster up|status|down``.

etcd, kube-apiserver (TLS, RBAC), kube-controller-manager and kwok as a fake kubelet, from the pinned toolchain
(``$ENDPOINTS_TOOLCHAIN_DIR/bin``). :mod:`endpoints.cluster.lifecycle` starts and stops them,
:mod:`endpoints.cluster.pki` makes their certificates, :mod:`endpoints.cluster.objects` what is applied before the
stacks (CRDs, gateways, fake nodes), :mod:`endpoints.cluster.apply` talks to the API server.
"""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The cluster cannot start, or is not there; the message says what to do."""
