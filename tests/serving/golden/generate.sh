#!/usr/bin/env bash
# Regenerate the swagger golden files with the real azureml-inference-server-http (azmlinfsrv), in a scratch venv.
# Usage (from the repository root): tests/serving/golden/generate.sh
# The scratch venv gets the same pandas/numpy/inference-schema versions as the project venv, so that
# inference-schema renders the sample types the same way in both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scripts=$(cd "$here/../scripts" && pwd)
venv=${AZML_VENV:-/tmp/azml-venv}
project_py=${PROJECT_PYTHON:-.venv/bin/python}
pins=$("$project_py" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("pandas", "numpy", "inference-schema")))')
[ -x "$venv/bin/azmlinfsrv" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q azureml-inference-server-http; }
"$venv/bin/pip" install -q $pins
for script in schema_score text_score mixed_schema_score; do
  port=$("$project_py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  log=$(mktemp)
  (cd "$scripts" && SERVICE_NAME="golden service" SERVICE_VERSION="2.5" \
     exec "$venv/bin/azmlinfsrv" --entry_script "$script.py" --port "$port") >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.2; done
  for version in 2 3 3.1; do
    curl -s "http://127.0.0.1:$port/swagger.json?version=$version" | "$project_py" -m json.tool --sort-keys \
      > "$here/${script}.swagger${version}.json"
  done
  curl -s "http://127.0.0.1:$port/swagger.json?version=4" > "$here/${script}.swagger-unknown.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$log"
done
"$venv/bin/pip" freeze | grep -i -E '^(azureml-inference-server-http|inference-schema|pandas|numpy)==' > "$here/VERSIONS.txt"
