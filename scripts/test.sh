#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs into .venv (and, as root, podman with a
# locally built base image for the container tests), then lint, types and tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k router). ENDPOINTS_SKIP_IMAGES=1 leaves podman alone
# (the container tests then skip and say why).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh all
. .venv/bin/activate
if [ "${ENDPOINTS_SKIP_IMAGES:-0}" != "1" ]; then
  echo "==> container base image (podman)"
  bash scripts/images/build-base-image.sh ||
    echo "note: the base image was not built; the podman tests will skip and say why"
fi
echo "==> ruff"
ruff check .
echo "==> mypy"
mypy
echo "==> pytest"
python -m pytest "$@"
