#!/usr/bin/env bash
# The local cluster toolchain, built from published Go modules (the Go module proxy; nothing else is fetched):
# the Pulumi CLI, its Python language host and dynamic-provider plugin, the Kubernetes provider, etcd, kube-apiserver,
# kube-controller-manager, kwok and kube-scheduler, at the versions in toolchain/versions.env; and, built from
# nothing, the Prometheus Operator's PodMonitor and PrometheusRule CRDs (NAME prometheus-operator-crds), copied
# unchanged from its module into crds/ for `endpoints cluster up` and the offline validator, and kwok's Logs and
# ClusterLogs CRDs (NAME kwok-crds), copied unchanged from kwok's module into kwok-crds/ (pod logs on the cluster).
#
#   scripts/toolchain.sh [build] [NAME...]   build what is missing or stale (all, or the NAMEs), idempotent
#   scripts/toolchain.sh env                 print the environment to use them: eval "$(scripts/toolchain.sh env)"
#   scripts/toolchain.sh list                print NAME VERSION PATH of everything, and whether it is built
#   scripts/toolchain.sh check               exit 1 (naming what) unless everything is built and current
#
# ENDPOINTS_TOOLCHAIN_VERSIONS names another versions file (tests).
# Binaries go to ${ENDPOINTS_TOOLCHAIN_DIR:-<repo>/.toolchain}/bin, the CRDs to crds/; build dirs and logs beside
# them. On failure it prints one line naming the binary (or CRD set), the module@version and the step (download,
# generate, build, install), and the log.
# Needs Go >= GO_MIN_VERSION. Builds one thing at a time with `go build -p ${ENDPOINTS_TOOLCHAIN_JOBS:-2}`.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSIONS="${ENDPOINTS_TOOLCHAIN_VERSIONS:-$ROOT/toolchain/versions.env}"
WRAPPERS="$ROOT/toolchain/wrappers"
# shellcheck source=../toolchain/versions.env
. "$VERSIONS"

TC="${ENDPOINTS_TOOLCHAIN_DIR:-$ROOT/.toolchain}"
BIN="$TC/bin"
CRDS="$TC/crds"
BUILD="$TC/build"
LOGS="$TC/logs"
JOBS="${ENDPOINTS_TOOLCHAIN_JOBS:-2}"
IFS=, read -r -a BINARIES <<<"$TOOLCHAIN_BINARIES"
# CRD files installed into $CRDS, unchanged (endpoints/cluster/objects.py TOOLCHAIN_CRD_FILES names the same).
PROMETHEUS_OPERATOR_CRDS=(monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
# Installed into $TC/kwok-crds (endpoints/cluster/objects.py KWOK_CRD_FILES names the same).
KWOK_CRDS=(kwok.x-k8s.io_logs.yaml kwok.x-k8s.io_clusterlogs.yaml)
# The CRDs first: a copy from the module cache (seconds), needed by tests that do not wait for the binaries.
ALL=(prometheus-operator-crds kwok-crds "${BINARIES[@]}")

# module@version that each binary is built from (what its stamp records and its error names).
spec() {
  case "$1" in
    pulumi) echo "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" ;;
    pulumi-language-python | pulumi-resource-pulumi-python) echo "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" ;;
    pulumi-resource-kubernetes) echo "github.com/pulumi/pulumi-kubernetes/provider/v4@$PULUMI_KUBERNETES_MODULE_VERSION" ;;
    etcd) echo "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler) echo "k8s.io/kubernetes@v$KUBERNETES_VERSION" ;;
    kwok | kwok-crds) echo "sigs.k8s.io/kwok@v$KWOK_VERSION" ;;
    prometheus-operator-crds) echo "github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION" ;;
    *) echo "toolchain: unknown binary '$1' (known: ${ALL[*]})" >&2; return 1 ;;
  esac
}

# The version a binary reports (the stamp also records the module version and the recipe's hash).
version_of() {
  case "$1" in
    pulumi | pulumi-language-python | pulumi-resource-pulumi-python) echo "$PULUMI_VERSION" ;;
    pulumi-resource-kubernetes) echo "$PULUMI_KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler) echo "$KUBERNETES_VERSION" ;;
    kwok | kwok-crds) echo "$KWOK_VERSION" ;;
    prometheus-operator-crds) echo "$PROMETHEUS_OPERATOR_VERSION" ;;
  esac
}

# The files of a CRD set (nothing for a binary).
crd_files() {
  case "$1" in
    prometheus-operator-crds) echo "${PROMETHEUS_OPERATOR_CRDS[*]}" ;;
    kwok-crds) echo "${KWOK_CRDS[*]}" ;;
  esac
}

# Where NAME is installed (a binary, or the CRD folder) and where its stamp is.
target() {
  case "$1" in
    prometheus-operator-crds) echo "$CRDS" ;;
    kwok-crds) echo "$TC/kwok-crds" ;;
    *) echo "$BIN/$1" ;;
  esac
}
stamp_file() {
  if [ -n "$(crd_files "$1")" ]; then echo "$(target "$1")/.$1.stamp"; else echo "$BIN/.$1.stamp"; fi
}

# Whether NAME is installed at all (every file of it there), current or not.
installed() {
  local f dir
  dir="$(target "$1")"
  if [ -n "$(crd_files "$1")" ]; then
    for f in $(crd_files "$1"); do [ -f "$dir/$f" ] || return 1; done
  else
    [ -x "$dir" ]
  fi
}

# What a binary's stamp must say for it to be current: its module@version and a hash of its recipe (this
# script's build function and its wrapper files), so a changed recipe rebuilds.
stamp_text() {
  local name="$1" recipe
  recipe="$(declare -f "build_${name//-/_}")"
  if [ -d "$WRAPPERS/$name" ]; then recipe+="$(cat "$WRAPPERS/$name"/*)"; fi
  recipe+="$(crd_files "$name")"
  printf '%s %s %s\n' "$(spec "$name")" "$(version_of "$name")" "$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
}

is_current() {
  local stamp
  stamp="$(stamp_file "$1")"
  installed "$1" && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stamp_text "$1")" ]
}

# run NAME STEP CMD...: runs CMD logging to $LOGS/NAME.log; on failure one line names binary, module, step.
run() {
  local name="$1" step="$2"
  shift 2
  echo "+ $*" >>"$LOGS/$name.log"
  if ! "$@" >>"$LOGS/$name.log" 2>&1; then
    local why
    why="$(grep -v '^+ ' "$LOGS/$name.log" | grep -v '^go: downloading' | tail -n 1 | cut -c1-300)"
    echo "toolchain: $name: $(spec "$name"): $step failed: ${why:-no output} (log: $LOGS/$name.log)" >&2
    exit 1
  fi
}

gobuild() { # gobuild NAME OUT PKG [LDFLAGS]
  run "$1" build go build -p "$JOBS" -trimpath -ldflags "-s -w ${4:-}" -o "$2" "$3"
}

# A fresh build dir holding the wrapper module files of NAME (if any).
wrapper_dir() {
  local dir="$BUILD/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ -d "$WRAPPERS/$1" ]; then cp "$WRAPPERS/$1"/* "$dir"/; fi
  echo "$dir"
}

# Copy of a module's source from the module cache, writable (for modules whose build generates files).
module_copy() { # module_copy NAME MODULE@VERSION DEST
  local dir
  dir="$(go mod download -json "$2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] || return 1
  rm -rf "$3"
  cp -r "$dir" "$3"
  chmod -R u+w "$3"
}

build_pulumi() {
  local dir
  dir="$(wrapper_dir pulumi)"
  cd "$dir"
  run pulumi download go mod download "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION"
  run pulumi download go mod edit -require="github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" \
    -require="github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  gobuild pulumi "$BIN/pulumi.new" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
}

build_pulumi_language_python() {
  local dir sdk
  dir="$(wrapper_dir pulumi-language-python)"
  cd "$dir"
  run pulumi-language-python download go mod download "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  run pulumi-language-python download go mod edit -require="github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  gobuild pulumi-language-python "$BIN/pulumi-language-python.new" . \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
  # The exec shim the host runs programs through, from the same sdk/v3 release.
  sdk="$(go list -m -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  run pulumi-language-python build install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" \
    "$BIN/pulumi-language-python-exec"
}

# The engine's plugin for Python dynamic resources (components/endpoint_keys.py): a shell script running
# `python -m pulumi.dynamic`, shipped in sdk/v3's python/dist (Pulumi's releases put it beside the language host).
build_pulumi_resource_pulumi_python() {
  local sdk
  cd "$BUILD"
  run pulumi-resource-pulumi-python download go mod download "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  sdk="$(go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  run pulumi-resource-pulumi-python build install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" \
    "$BIN/pulumi-resource-pulumi-python.new"
}

build_pulumi_resource_kubernetes() {
  local dir="$BUILD/pulumi-resource-kubernetes"
  local mod="github.com/pulumi/pulumi-kubernetes/provider/v4@$PULUMI_KUBERNETES_MODULE_VERSION"
  mkdir -p "$BUILD"
  run pulumi-resource-kubernetes download module_copy pulumi-resource-kubernetes "$mod" "$dir"
  cd "$dir"
  # provider/go.mod replaces its sdk/v4 with the repository's ../sdk: use the published one it requires.
  run pulumi-resource-kubernetes download go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4
  # The provider embeds schema-embed.json and terraform-mapping-embed.json, made by `go generate` from
  # schema.json with the release version stamped in.
  cd cmd/pulumi-resource-kubernetes
  run pulumi-resource-kubernetes generate env VERSION="$PULUMI_KUBERNETES_VERSION" go generate ./...
  cd "$dir"
  gobuild pulumi-resource-kubernetes "$BIN/pulumi-resource-kubernetes.new" ./cmd/pulumi-resource-kubernetes \
    "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$PULUMI_KUBERNETES_VERSION"
}

build_etcd() {
  local dir
  dir="$(wrapper_dir etcd)"
  cd "$dir"
  run etcd download go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  run etcd download go mod download "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  gobuild etcd "$BIN/etcd.new" . "-X go.etcd.io/etcd/api/v3/version.GitSHA=v$ETCD_VERSION"
}

# k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at v0.0.0 and replaces them with ./staging:
# the wrapper replaces each with the published v0.<minor>.<patch> of the same release.
kubernetes_module() {
  local dir="$BUILD/kubernetes" kmod staging="v0.${KUBERNETES_VERSION#*.}"
  if [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$KUBERNETES_VERSION" ]; then
    echo "$dir"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  (
    cd "$dir"
    run "$1" download go mod download "k8s.io/kubernetes@v$KUBERNETES_VERSION"
    kmod="$(go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
    printf 'module endpoints.local/toolchain/kubernetes\n\ngo %s\n' "$(sed -n 's/^go //p' "$kmod")" >go.mod
    run "$1" download go mod edit -require="k8s.io/kubernetes@v$KUBERNETES_VERSION"
    sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p' "$kmod" | while read -r m; do
      go mod edit -replace="$m=$m@$staging"
    done
    grep -q '=> k8s.io/api ' go.mod ||
      { echo "no staging replaces read from $kmod" >>"$LOGS/$1.log"; run "$1" generate false; }
  )
  echo "$KUBERNETES_VERSION" >"$dir/.ready"
  echo "$dir"
}

kube_ldflags() {
  local minor="${KUBERNETES_VERSION#*.}" p=k8s.io/component-base/version
  minor="${minor%%.*}"
  echo "-X $p.gitVersion=v$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean" \
    "-X $p.buildDate=1970-01-01T00:00:00Z -X $p.gitCommit=v$KUBERNETES_VERSION"
}

build_kube_apiserver() {
  local dir
  dir="$(kubernetes_module kube-apiserver)"
  cd "$dir"
  gobuild kube-apiserver "$BIN/kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver "$(kube_ldflags)"
}

build_kube_controller_manager() {
  local dir
  dir="$(kubernetes_module kube-controller-manager)"
  cd "$dir"
  gobuild kube-controller-manager "$BIN/kube-controller-manager.new" k8s.io/kubernetes/cmd/kube-controller-manager \
    "$(kube_ldflags)"
}

build_kube_scheduler() {
  local dir
  dir="$(kubernetes_module kube-scheduler)"
  cd "$dir"
  gobuild kube-scheduler "$BIN/kube-scheduler.new" k8s.io/kubernetes/cmd/kube-scheduler "$(kube_ldflags)"
}

build_kwok() {
  local dir
  dir="$(wrapper_dir kwok)"
  cd "$dir"
  printf 'module endpoints.local/toolchain/kwok\n\ngo 1.26.0\n' >go.mod
  run kwok download go mod download "sigs.k8s.io/kwok@v$KWOK_VERSION"
  run kwok download go mod edit -require="sigs.k8s.io/kwok@v$KWOK_VERSION"
  gobuild kwok "$BIN/kwok.new" sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
}

# The Prometheus Operator's CRDs, copied unchanged from the module (nothing is built) into $CRDS.new.
build_prometheus_operator_crds() {
  local mod="github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION" dir f
  cd "$BUILD"
  run prometheus-operator-crds download go mod download "$mod"
  dir="$(go mod download -json "$mod" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  rm -rf "$CRDS.new"
  mkdir -p "$CRDS.new"
  for f in "${PROMETHEUS_OPERATOR_CRDS[@]}"; do
    run prometheus-operator-crds install install -m 0644 "$dir/example/prometheus-operator-crd/$f" "$CRDS.new/$f"
  done
}

# kwok's Logs and ClusterLogs CRDs, copied unchanged from its module (nothing is built) into $TC/kwok-crds.new.
build_kwok_crds() {
  local mod="sigs.k8s.io/kwok@v$KWOK_VERSION" dir f
  cd "$BUILD"
  run kwok-crds download go mod download "$mod"
  dir="$(go mod download -json "$mod" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  rm -rf "$TC/kwok-crds.new"
  mkdir -p "$TC/kwok-crds.new"
  for f in "${KWOK_CRDS[@]}"; do
    run kwok-crds install install -m 0644 "$dir/kustomize/crd/bases/$f" "$TC/kwok-crds.new/$f"
  done
}

build_one() {
  local name="$1" start
  spec "$name" >/dev/null
  if is_current "$name"; then
    echo "toolchain: $name $(version_of "$name") is built ($(target "$name"))"
    return
  fi
  start=$SECONDS
  echo "toolchain: building $name $(version_of "$name") from $(spec "$name") ..."
  : >"$LOGS/$name.log"
  (
    export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOWORK=off
    "build_${name//-/_}"
  )
  local out
  out="$(target "$name")"
  if [ -d "$out.new" ]; then rm -rf "$out"; fi # a folder (the CRDs) replaces the old one whole
  mv -f "$out.new" "$out"
  stamp_text "$name" >"$(stamp_file "$name")"
  echo "toolchain: built $name in $((SECONDS - start)) s ($(du -sh "$out" | cut -f1))"
}

check_go() {
  local v
  if ! v="$(go env GOVERSION 2>/dev/null)"; then
    echo "toolchain: go: not found; install Go >= $GO_MIN_VERSION (the toolchain is built from Go modules)" >&2
    exit 1
  fi
  v="${v#go}"
  if [ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$v" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]; then
    echo "toolchain: go: got go$v; need >= $GO_MIN_VERSION" >&2
    exit 1
  fi
}

print_env() {
  cat <<EOF
export ENDPOINTS_TOOLCHAIN_DIR="$TC"
export PATH="$BIN:\$PATH"
export PULUMI_HOME="$TC/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=1
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
EOF
}

cmd="${1:-build}"
case "$cmd" in
  env) print_env ;;
  list)
    for n in "${ALL[@]}"; do
      if is_current "$n"; then s=built; elif installed "$n"; then s=stale; else s=missing; fi
      echo "$n $(version_of "$n") $(target "$n") $s"
    done
    ;;
  check)
    missing=()
    for n in "${ALL[@]}"; do is_current "$n" || missing+=("$n"); done
    if [ "${#missing[@]}" -gt 0 ]; then
      echo "toolchain: not built (or stale) in $TC: ${missing[*]}; run scripts/toolchain.sh" >&2
      exit 1
    fi
    ;;
  build | *)
    if [ "$cmd" = build ]; then shift || true; fi
    names=("$@")
    [ "${#names[@]}" -gt 0 ] || names=("${ALL[@]}")
    for n in "${names[@]}"; do spec "$n" >/dev/null; done
    check_go
    mkdir -p "$BIN" "$BUILD" "$LOGS" "$TC/pulumi-home"
    for n in "${names[@]}"; do build_one "$n"; done
    ;;
esac
