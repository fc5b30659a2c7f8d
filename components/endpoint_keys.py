"""An endpoint's keys: primary and secondary keys and a token signing key, in one Secret.

Shared by online and batch endpoints. Rotating a key is a config change (its generation in ``KeyRotation``) that
regenerates only that key.

Each key is an :class:`EndpointKey`, a Pulumi dynamic resource whose provider is the Python class below (run by the
engine through ``pulumi-resource-pulumi-python``, i.e. ``python -m pulumi.dynamic`` in the project's virtualenv).
It replaced ``pulumi_random.RandomPassword`` because the random provider cannot be built from the Go module proxy
(docs/toolchain.md: every version of ``github.com/pulumi/pulumi-random/provider/v4`` is refused), and the keys must
not depend on a binary nobody can install here. Behaviour is the same: alphanumeric keys from the OS's CSPRNG
(:mod:`secrets`), generated once, kept in state as secrets, regenerated only when their length or rotation marker
changes.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.builders.stack_config import KeyRotation
from components.kubernetes_objects import create_object

KEY_LENGTH = 48
SIGNING_KEY_LENGTH = 64
ALPHABET = string.ascii_letters + string.digits

# (primary, secondary, signing key) -> the Secret object (the online and batch builders name and label it).
SecretBuilder = Callable[[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str]], dict[str, Any]]


class _KeyProvider(pulumi.dynamic.ResourceProvider):
    """Creates a key; a change of ``length`` or ``rotation`` replaces it (a new key), nothing else touches it."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        value = "".join(secrets.choice(ALPHABET) for _ in range(int(props["length"])))
        return pulumi.dynamic.CreateResult(id_=uuid.uuid4().hex, outs={**props, "result": value})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [k for k in ("length", "rotation") if str(olds.get(k)) != str(news.get(k))]
        return pulumi.dynamic.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)


class EndpointKey(pulumi.dynamic.Resource):
    """One generated key (``result``, a secret output).

    Args:
        name: Resource name.
        length: Characters (alphanumeric).
        rotation: Rotation marker; changing it generates a new key.
        opts: Resource options (the endpoint component as parent).
    """

    result: pulumi.Output[str]

    def __init__(self, name: str, length: int, rotation: str, opts: pulumi.ResourceOptions) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"]))
        super().__init__(_KeyProvider(), name, {"length": length, "rotation": rotation, "result": None}, opts)


@dataclass
class EndpointKeys:
    """The generated keys (secret outputs) and the Secret resource holding them with the signing key."""

    primary: pulumi.Output[str]
    secondary: pulumi.Output[str]
    secret: pulumi.CustomResource


def create_endpoint_keys(
    parent: pulumi.Resource, name: str, rotation: KeyRotation, build_secret: SecretBuilder
) -> EndpointKeys:
    """Generate the three keys as children of ``parent`` and create the Secret ``build_secret`` makes of them."""

    def password(suffix: str, length: int, generation: str) -> pulumi.Output[str]:
        key = EndpointKey(f"{name}-{suffix}", length, generation, pulumi.ResourceOptions(parent=parent))
        return pulumi.Output.secret(key.result)

    primary = password("primary-key", KEY_LENGTH, rotation.primary)
    secondary = password("secondary-key", KEY_LENGTH, rotation.secondary)
    signing_key = password("signing-key", SIGNING_KEY_LENGTH, rotation.token_signing)
    secret = create_object(
        f"{name}-keys", build_secret(primary, secondary, signing_key), pulumi.ResourceOptions(parent=parent)
    )
    return EndpointKeys(primary, secondary, secret)
