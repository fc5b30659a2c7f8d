"""``endpoints plan`` after the README's install (``pip install -e .[ml]``, no ``plan`` extra): one line, no traceback.

Issue 13 item 16. The modules of the ``plan`` extra are hidden from a real ``endpoints`` process (``None`` in
``sys.modules`` is how Python marks a module that cannot be imported), so the test needs no second virtualenv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_RUN = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if the package were not installed
from endpoints.cli.main import main
sys.argv = ["endpoints", "plan", "--stack", "dev", "--project", sys.argv[2]]
main()
"""


@pytest.mark.parametrize(
    ("hidden", "missing"),
    [
        pytest.param("jsonschema", "jsonschema", id="jsonschema"),
        pytest.param("kubernetes_validate", "kubernetes_validate", id="kubernetes-validate"),
    ],
)
def test_plan_without_the_plan_extra_says_what_to_install(hidden: str, missing: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, hidden, str(REPO)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: endpoints plan needs the 'plan' extra (module {missing!r} is not installed): "
        "pip install 'k8s-ml-endpoints[plan]' (in a checkout: pip install -e '.[plan]')"
    ]
