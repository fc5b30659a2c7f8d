#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the project into it with the extras named in $1 (default: all).
# Sourced by scripts/quickstart.sh and scripts/test.sh; safe to run again (pip skips what is installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-all}"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Python >= 3.11 is needed (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  PY="$(find_python)"
  echo "==> creating $ROOT/.venv with $PY"
  "$PY" -m venv "$ROOT/.venv" || {
    echo "error: '$PY -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  }
fi
stamp="$ROOT/.venv/.installed-$EXTRAS"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "==> installing the project with extras [$EXTRAS] into .venv"
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]"
  touch "$stamp"
fi
# Pulumi runs the program in stacks/ and starts the Python dynamic-provider plugin (the endpoint keys) there with
# PULUMI_RUNTIME_VIRTUALENV=.venv, Pulumi.yaml's option, taken relative to stacks/: stacks/.venv links to this venv.
# A link, made here rather than committed (a checkout that loses links would leave a plain file).
if [ "$(readlink "$ROOT/stacks/.venv" 2>/dev/null)" != "../.venv" ]; then
  rm -rf "$ROOT/stacks/.venv"
  ln -s ../.venv "$ROOT/stacks/.venv"
fi
