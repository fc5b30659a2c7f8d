#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs into .venv (and, as root, podman with a
# locally built base image for the container tests, chromium for the studio's browser tests and prometheus for
# the observability tests), then lint,
# types and tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k router). ENDPOINTS_SKIP_IMAGES=1 leaves podman alone
# (the container tests then skip and say why). ENDPOINTS_TOOLCHAIN=build|auto|skip: see the toolchain step below.
set -euo pipefail
cd "$(dirname "$0")/.."
# The cluster toolchain (Pulumi CLI, its Python language host, the Kubernetes provider, etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok: scripts/toolchain.sh) is built from Go modules into .toolchain/
# (git-ignored; an existing build is reused, a stale one rebuilt). A cold build is long (docs/toolchain.md), so it
# starts first, in the background, while the Python, podman and Debian installs below run; the tests wait for it.
# ENDPOINTS_TOOLCHAIN=build (default) builds what is missing and runs the `cluster` end-to-end tests; auto uses
# the toolchain only if it is already complete (else the cluster tests are deselected, and this says so); skip
# leaves it alone and deselects them.
TOOLCHAIN_MODE="${ENDPOINTS_TOOLCHAIN:-build}"
TOOLCHAIN_PID=""
case "$TOOLCHAIN_MODE" in
  build)
    mkdir -p .toolchain/logs
    echo "==> cluster toolchain (scripts/toolchain.sh, in the background: .toolchain/logs/build.log)"
    bash scripts/toolchain.sh >.toolchain/logs/build.log 2>&1 &
    TOOLCHAIN_PID=$!
    trap '[ -z "$TOOLCHAIN_PID" ] || kill -- "$TOOLCHAIN_PID" 2>/dev/null || true' EXIT
    ;;
  auto | skip) ;;
  *) echo "error: ENDPOINTS_TOOLCHAIN=${TOOLCHAIN_MODE}: use build, auto or skip" >&2; exit 2 ;;
esac
bash scripts/bootstrap.sh all
. .venv/bin/activate
if [ "${ENDPOINTS_SKIP_IMAGES:-0}" != "1" ]; then
  echo "==> container base image (podman)"
  bash scripts/images/build-base-image.sh ||
    echo "note: the base image was not built; the podman tests will skip and say why"
fi
if [ "${ENDPOINTS_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  # The studio's browser tests (tests/studio) drive Debian's chromium through Playwright; they fail, not skip,
  # when it is missing (ENDPOINTS_SKIP_BROWSER=1 skips them and says so).
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> chromium (browser tests of the studio)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
      echo "note: chromium could not be installed; the studio's browser tests will fail"
  else
    echo "note: chromium is missing (install it: sudo apt-get install chromium); the studio's browser tests will fail"
  fi
fi
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  # The observability tests run Debian's Prometheus (a real server scraping a local endpoint) and promtool; they
  # fail, not skip, when it is missing (tests/observability).
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> prometheus (observability tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null ||
      echo "note: prometheus could not be installed; the observability tests will fail"
  else
    echo "note: prometheus is missing (install it: sudo apt-get install prometheus); the observability tests will fail"
  fi
fi
echo "==> ruff"
ruff check .
ruff format --check .
echo "==> mypy"
mypy
echo "==> lint-imports (layers: pyproject [tool.importlinter])"
lint-imports
# The `cluster` and `pulumi_cli` tests need the toolchain; everything else runs first, while a cold toolchain build is still going
# (the two share the cores, but most of the suite waits on sockets and subprocesses). Both runs always happen; the
# exit status is the first failure's.
toolchain_ready() {
  [ "$TOOLCHAIN_MODE" != "skip" ] && bash scripts/toolchain.sh check >/dev/null 2>&1
}
# ENDPOINTS_TEST_WORKERS=N|auto|0 sets the pytest-xdist workers (a test file per worker; 0: in this process).
# Unset: the tests that need no toolchain run on 2 workers (1,478 tests in 7 min instead of 16 here), except while
# a cold toolchain build runs beside them: then serially, since that build is CPU-bound and starving a suite of
# servers and deadlines makes it flaky. The cluster tests run serially (one API server for all of them).
workers_args() {
  if [ "$1" = "0" ]; then echo "-p no:xdist"; else echo "-n $1 --dist loadfile"; fi
}
if [ -n "${ENDPOINTS_TEST_WORKERS:-}" ]; then
  first_workers="$ENDPOINTS_TEST_WORKERS" cluster_workers="$ENDPOINTS_TEST_WORKERS"
elif [ "$TOOLCHAIN_MODE" != "build" ] || toolchain_ready; then
  first_workers=2 cluster_workers=0
else
  first_workers=0 cluster_workers=0
fi
read -r -a FIRST <<<"$(workers_args "$first_workers")"
read -r -a CLUSTER <<<"$(workers_args "$cluster_workers")"
status=0
if [ -n "$TOOLCHAIN_PID" ] || toolchain_ready; then
  echo "==> pytest (all but the tests that need the toolchain: ${FIRST[*]})"
  python -m pytest "${FIRST[@]}" -m "not cluster and not pulumi_cli" "$@" || status=$?
  if [ -n "$TOOLCHAIN_PID" ]; then
    echo "==> waiting for the cluster toolchain build"
    if ! wait "$TOOLCHAIN_PID"; then
      TOOLCHAIN_PID=""
      cat .toolchain/logs/build.log >&2
      echo "error: the cluster toolchain did not build (the line above names the binary, module and step)" >&2
      exit 1
    fi
    TOOLCHAIN_PID=""
    cat .toolchain/logs/build.log
  fi
  eval "$(bash scripts/toolchain.sh env)"
  echo "==> pytest (the real Pulumi engine, and the cluster end-to-end tests: docs/cluster.md)"
  rc=0
  python -m pytest "${CLUSTER[@]}" -m "cluster or pulumi_cli" "$@" || rc=$?
  # 5: no test selected (extra arguments left none of the cluster tests).
  if [ "$rc" != 0 ] && [ "$rc" != 5 ] && [ "$status" = 0 ]; then status=$rc; fi
  exit "$status"
fi
echo "note: the cluster toolchain is not complete ($(bash scripts/toolchain.sh check 2>&1 || true)); the cluster"
echo "      end-to-end tests are deselected. ENDPOINTS_TOOLCHAIN=build scripts/test.sh builds it first."
echo "==> pytest (${FIRST[*]})"
python -m pytest "${FIRST[@]}" -m "not cluster" "$@"
