#!/usr/bin/env bash
# podman with this project's settings: emptied default ulimits (containers.conf) and runc.
# Usage: scripts/images/podman.sh <podman arguments...>
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
exec podman --runtime "${PODMAN_RUNTIME:-/usr/sbin/runc}" "$@"
