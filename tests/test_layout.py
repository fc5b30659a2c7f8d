"""The test tree itself: pytest collects it in rootdir mode, where two test modules with one basename collide."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_basenames_are_unique() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if "fixtures" in path.parts or "scripts" in path.parts or path.name == "conftest.py":
            continue
        seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert clashes == {}, f"test modules share a basename (pytest cannot import both): {clashes}"
