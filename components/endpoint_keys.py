"""An endpoint's keys: primary and secondary keys and a token signing key (pulumi-random), in one Secret.

Shared by online and batch endpoints. Rotating a key is a config change (its generation in ``KeyRotation``) that
regenerates only that key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_random as random

from components.builders.stack import KeyRotation
from components.kubernetes_objects import create_object

KEY_LENGTH = 48
SIGNING_KEY_LENGTH = 64

# (primary, secondary, signing key) -> the Secret object (the online and batch builders name and label it).
SecretBuilder = Callable[[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str]], dict[str, Any]]


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
        pw = random.RandomPassword(
            f"{name}-{suffix}",
            length=length,
            special=False,
            keepers={"rotation": generation},
            opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result", "bcryptHash"]),
        )
        return pulumi.Output.secret(pw.result)

    primary = password("primary-key", KEY_LENGTH, rotation.primary)
    secondary = password("secondary-key", KEY_LENGTH, rotation.secondary)
    signing_key = password("signing-key", SIGNING_KEY_LENGTH, rotation.token_signing)
    secret = create_object(
        f"{name}-keys", build_secret(primary, secondary, signing_key), pulumi.ResourceOptions(parent=parent)
    )
    return EndpointKeys(primary, secondary, secret)
