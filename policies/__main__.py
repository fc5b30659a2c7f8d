"""CrossGuard entry point: ``pulumi preview --policy-pack policies/`` runs this file.

The only place the pack is constructed (``PolicyPack(...)`` starts the analyzer's gRPC server and blocks).
How the stack's environment and enforcement level are chosen: see ``policies/enforcement.py`` and docs/policies.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # The analyzer runs this directory as a script; make the repository importable so the rules are the very
    # modules the offline plan and the tests import (``policies.rules``), not copies.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policies.enforcement import settings_from_environ
from policies.pack import PACK_NAME, build_policies, enforcement_level, initial_config


def main() -> None:
    """Serve the pack for the stack named in the environment the Pulumi CLI gives it."""
    settings = settings_from_environ(os.environ)
    policies = build_policies()
    PolicyPack(
        name=PACK_NAME,
        policies=policies,
        enforcement_level=enforcement_level(settings),
        initial_config=initial_config(settings, policies),  # type: ignore[arg-type]
        description=f"ml-endpoints guardrails ({settings.environment} rules, {settings.level})",
    )


if __name__ == "__main__":
    main()
