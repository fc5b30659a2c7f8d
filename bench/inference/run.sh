#!/usr/bin/env bash
# One command for the whole inference benchmark: installs wrk (Debian) and the peer servers (scratch venvs
# under /tmp, see setup_peers.sh) when missing, then runs run.py with the project venv.
# Usage: bench/inference/run.sh [--duration 10] [--connections 64,8,1] [--workers 1,2] [--servers ours,...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
"$repo/bench/inference/setup_peers.sh"
exec "$repo/.venv/bin/python" "$repo/bench/inference/run.py" "$@"
