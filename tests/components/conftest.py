"""Fixtures of the component tests.

``pytest`` (unlike ``python -m pytest``) does not put the repository root on ``sys.path``, and ``tests/`` (where
the root conftest lives) then makes ``tests/components`` a namespace package that shadows the real ``components``
package. Putting the root first keeps ``import components`` meaning the project's package either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
