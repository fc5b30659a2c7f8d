"""The throwaway cluster's certificates, service-account key pair and kubeconfigs, generated locally.

One CA signs everything: etcd's serving certificate and the API server's client certificate for etcd, the API
server's serving certificate, and one client certificate per user (the admin in ``system:masters``, the
controller-manager and the scheduler under the names their bootstrap RBAC roles expect, kwok under a user that
:mod:`endpoints.cluster.objects` grants only what a kubelet needs). Keys are ECDSA P-256: quick to generate, and
accepted by every component (service-account tokens are then ES256). Nothing here leaves the state directory,
whose files are readable by the owner only.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The first address of the service range (--service-cluster-ip-range): the in-cluster `kubernetes` Service.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
VALIDITY = datetime.timedelta(days=30)  # a throwaway cluster; `up` makes new ones every time


@dataclass(frozen=True)
class Identity:
    """A client certificate's subject: ``CN`` is the user name, each ``O`` a group."""

    user: str
    groups: tuple[str, ...] = ()


ADMIN = Identity("ml-endpoints-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("system:kube-controller-manager")
SCHEDULER = Identity("system:kube-scheduler")
KWOK = Identity("ml-endpoints:kwok")
BINDER = Identity("ml-endpoints:binder")
# Files (stems) of kwok's kubelet serving certificate and of the API server's client certificate for it.
KWOK_SERVING = "kwok-serving"
APISERVER_KUBELET_CLIENT = "apiserver-kubelet-client"


@dataclass(frozen=True)
class Pki:
    """Paths of everything :func:`generate` wrote (under ``<state>/pki``)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def cert(self, name: str) -> Path:
        """The certificate ``name.crt``."""
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        """The private key ``name.key``."""
        return self.root / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        """Service-account token signing key (the API server signs with it, the controller-manager too)."""
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usages: tuple[x509.ObjectIdentifier, ...] = (),
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def generate(root: Path, clients: tuple[tuple[str, Identity], ...]) -> Pki:
    """Write a fresh CA, serving certificates, client certificates and the service-account key pair under ``root``.

    Args:
        root: Folder to write to (created, mode 0700).
        clients: ``(file stem, identity)`` of each client certificate to issue.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    pki = Pki(root)
    ca_key = _new_key()
    ca_cert = _sign(_name("ml-endpoints-local-ca"), ca_key.public_key(), None, ca_key, ca=True)
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pki.ca_key, _key_pem(ca_key))

    def issue(stem: str, subject: x509.Name, **kw: tuple[str, ...] | tuple[x509.ObjectIdentifier, ...]) -> None:
        key = _new_key()
        cert = _sign(subject, key.public_key(), (ca_cert, ca_key), ca_key, **kw)  # type: ignore[arg-type]
        pki.cert(stem).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(pki.key(stem), _key_pem(key))

    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    issue("etcd", _name("etcd"), usages=(server, client), dns=("localhost",), ips=("127.0.0.1",))
    issue("apiserver-etcd-client", _name("kube-apiserver-etcd-client"), usages=(client,))
    issue(
        "apiserver",
        _name("kube-apiserver"),
        usages=(server,),
        dns=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ips=("127.0.0.1", KUBERNETES_SERVICE_IP),
    )
    # kwok's kubelet server (pod logs): the API server dials 127.0.0.1:<kwok port>, the fake nodes' InternalIP, and
    # checks this certificate against the CA; it presents its own client certificate there.
    issue(KWOK_SERVING, _name("kwok-kubelet"), usages=(server,), dns=("localhost",), ips=("127.0.0.1",))
    issue(APISERVER_KUBELET_CLIENT, _name("kube-apiserver-kubelet-client"), usages=(client,))
    for stem, identity in clients:
        issue(stem, _name(identity.user, identity.groups), usages=(client,))
    sa = _new_key()
    _write_private(pki.sa_key, _key_pem(sa))
    pki.sa_pub.write_bytes(
        sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki


def write_kubeconfig(path: Path, pki: Pki, stem: str, server: str, user: str, context: str = "ml-endpoints") -> None:
    """A kubeconfig for ``server`` authenticating with the client certificate ``stem`` (data embedded, mode 0600).

    Embedding keeps the file usable after it is copied elsewhere (a CI secret, ``~/.kube/config``).
    """

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(pki.cert(stem)), "client-key-data": b64(pki.key(stem))},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }
    _write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
