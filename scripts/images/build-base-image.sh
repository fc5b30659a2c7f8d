#!/usr/bin/env bash
# Builds the local base image localhost/debian-python:bookworm (Debian bookworm minbase with python3,
# python3-venv and ca-certificates) for machines that cannot pull images. Pass it to the Dockerfiles
# under serving/ as BASE_IMAGE. Installs podman, runc and debootstrap with apt-get when missing.
#
# Usage: scripts/images/build-base-image.sh [--force]
#   --force   rebuild even when the image already exists.
# Env: BASE_IMAGE_REF (default localhost/debian-python:bookworm),
#      DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ref="${BASE_IMAGE_REF:-localhost/debian-python:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

need=()
command -v podman >/dev/null || need+=(podman)
[[ -x /usr/sbin/runc ]] || need+=(runc)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || need+=(debootstrap)
if ((${#need[@]})); then
  sudo=""; ((EUID == 0)) || sudo="sudo"
  echo "installing ${need[*]} with apt-get" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

podman=("$here/podman.sh")
if ((force == 0)) && "${podman[@]}" image exists "$ref"; then
  echo "$ref already exists (use --force to rebuild)" >&2
  exit 0
fi

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/debian-python-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
start=$SECONDS
# minbase: essential packages + apt only; python3-venv brings ensurepip so the Dockerfiles can create venvs.
/usr/sbin/debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$mirror" >&2
# Drop what a runtime image never needs: apt lists/caches, docs, man pages, locales.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" --numeric-owner -c . | "${podman[@]}" import \
  --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$ref" >&2
echo "built $ref in $((SECONDS - start)) s" >&2
"${podman[@]}" images "$ref"
