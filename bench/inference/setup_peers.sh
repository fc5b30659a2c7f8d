#!/usr/bin/env bash
# Create the scratch virtual environments of the peer servers (idempotent; each venv is made once).
# Peers live outside the project venv so their pins never leak into it:
#   /tmp/bench-azml    azureml-inference-server-http (azmlinfsrv)
#   /tmp/bench-mlflow  mlflow (full, for `mlflow models serve`)
#   /tmp/bench-kserve  kserve (ModelServer)
#   /tmp/bench-mlserver mlserver + mlserver-sklearn (adaptive batching)
#   /tmp/bench-bentoml  bentoml (@bentoml.api(batchable=True))
#   /tmp/bench-kserve-agent/agent  KServe's Go agent (its request batcher: `kserve-batch`), built from the released
#                       module with Go (skipped with a message when `go` is missing)
# Usage: bench/inference/setup_peers.sh [azml|mlflow|kserve|mlserver|bentoml|kserve-agent ...]   (default: all)
set -euo pipefail
PY=${PYTHON:-python3}
COMMON="scikit-learn numpy pandas"
KSERVE_AGENT_VERSION=${KSERVE_AGENT_VERSION:-v0.20.0}
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(azml mlflow kserve mlserver bentoml kserve-agent)

# KServe's batcher is not in the Python ModelServer: it is the agent sidecar (cmd/agent, `--enable-batcher`) that
# KServe puts in front of the model server when an InferenceService sets `batcher:`. Its go.mod has replace
# directives, so `go install module@version` refuses it: the module is downloaded and built inside its own tree.
build_kserve_agent() {
  local dir=/tmp/bench-kserve-agent
  [ -x "$dir/agent" ] && return 0
  if ! command -v go >/dev/null; then
    echo "peer kserve-agent: go is not installed; kserve-batch is skipped" >&2
    return 0
  fi
  rm -rf "$dir" && mkdir -p "$dir/mod"
  local src
  if ! src=$(cd "$dir/mod" && go mod init bench-kserve-agent >/dev/null 2>&1 &&
    go mod download -json "github.com/kserve/kserve@$KSERVE_AGENT_VERSION" 2> "$dir.log" |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'); then
    echo "peer kserve-agent: go mod download github.com/kserve/kserve@$KSERVE_AGENT_VERSION failed; see $dir.log" >&2
    return 0
  fi
  cp -r "$src" "$dir/src" && chmod -R u+w "$dir/src"
  if (cd "$dir/src" && go build -trimpath -o "$dir/agent" ./cmd/agent) >> "$dir.log" 2>&1; then
    echo "github.com/kserve/kserve@$KSERVE_AGENT_VERSION cmd/agent" > "$dir/VERSION"
  else
    echo "peer kserve-agent: go build ./cmd/agent of github.com/kserve/kserve@$KSERVE_AGENT_VERSION failed; see $dir.log" >&2
  fi
}

for peer in "${peers[@]}"; do
  if [ "$peer" = kserve-agent ]; then
    build_kserve_agent
    continue
  fi
  venv=/tmp/bench-$peer
  if [ -x "$venv/bin/python" ] && [ -f "$venv/.ok" ]; then continue; fi
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  case $peer in
    azml) pkgs="azureml-inference-server-http inference-schema $COMMON" ;;
    mlflow) pkgs="mlflow $COMMON" ;;
    kserve) pkgs="kserve $COMMON" ;;
    # MLServer 1.7.1 workers call asyncio.get_event_loop(), which uvloop >= 0.22 refuses in a fresh process.
    mlserver) pkgs="mlserver mlserver-sklearn uvloop<0.22 joblib $COMMON" ;;
    bentoml) pkgs="bentoml joblib $COMMON" ;;
    *) echo "unknown peer $peer" >&2; exit 2 ;;
  esac
  if "$venv/bin/pip" install -q --disable-pip-version-check $pkgs > "$venv.log" 2>&1; then
    touch "$venv/.ok"
  else
    echo "peer $peer: pip install $pkgs failed; see $venv.log" >&2
  fi
done
