#!/usr/bin/env bash
# Create the scratch virtual environments of the peer servers (idempotent; each venv is made once).
# Peers live outside the project venv so their pins never leak into it:
#   /tmp/bench-azml    azureml-inference-server-http (azmlinfsrv)
#   /tmp/bench-mlflow  mlflow (full, for `mlflow models serve`)
#   /tmp/bench-kserve  kserve (ModelServer)
#   /tmp/bench-mlserver mlserver + mlserver-sklearn (adaptive batching)
#   /tmp/bench-bentoml  bentoml (@bentoml.api(batchable=True))
# Usage: bench/inference/setup_peers.sh [azml|mlflow|kserve|mlserver|bentoml ...]   (default: all)
set -euo pipefail
PY=${PYTHON:-python3}
COMMON="scikit-learn numpy pandas"
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(azml mlflow kserve mlserver bentoml)
for peer in "${peers[@]}"; do
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
