#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs into .venv, then lint, types and tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k router).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh all
. .venv/bin/activate
echo "==> ruff"
ruff check .
echo "==> mypy"
mypy
echo "==> pytest"
python -m pytest "$@"
