"""docs/policies.md lists every rule the pack has (and no rule it does not have)."""

from __future__ import annotations

import re
from pathlib import Path

from policies.rules import RESOURCE_RULES, STACK_RULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def test_rules_table_matches_the_pack() -> None:
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(rows) == sorted(r.name for r in (*RESOURCE_RULES, *STACK_RULES))
