#!/usr/bin/env bash
# The README's main command:   bash scripts/quickstart.sh
#
# From a fresh clone: creates .venv if missing, installs the project with the example's extras, trains the
# car-classifier models if missing (10-35 s), starts the example endpoint locally (two serving processes +
# the local router, key auth, traffic alice 90 / bob 10), shows the scoring URI, the key, a sample
# prediction, how 300 requests split, then how mirroring looks (endpoint.mirror.yml), and stops everything.
#
#   KEEP_UP=1 bash scripts/quickstart.sh   leave the endpoint running (stop it with `endpoints local down`)
#   PORT=9000 bash scripts/quickstart.sh   router port (default 8765, or a free one if 8765 is taken)
#   PYTHON=python3.12 ...                  interpreter for the new .venv (3.11 or newer)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EXAMPLE=examples/car-classifier
ENDPOINT=car-classifier
REQUESTS=${REQUESTS:-300}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
  PY=${PYTHON:-python3}
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
  "$PY" -m venv .venv
  echo "created .venv with $("$PY" --version)"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if python -c 'import endpoints.cli.local, serving.server.cli, sklearn, lightgbm, PIL, joblib' 2>/dev/null; then
  echo "project and example dependencies already installed"
else
  # pip's output goes to a log, shown only if the install fails (it is long and mostly warnings).
  log=.venv/quickstart-install.log
  if ! { python -m pip install --upgrade pip && python -m pip install -e ".[ml]"; } > "$log" 2>&1; then
    tail -n 40 "$log"
    echo "pip install failed; full log: $log" >&2
    exit 1
  fi
  echo "installed k8s-ml-endpoints[ml] into .venv (log: $log)"
fi

step "Example models (examples/car-classifier/train.py: synthetic photos, scikit-learn + LightGBM)"
python "$EXAMPLE/train.py"

STATE_DIR=${ENDPOINTS_STATE_DIR:-$ROOT/.endpoints}
export ENDPOINTS_STATE_DIR=$STATE_DIR
cleanup() {
  status=$?
  if [ "${KEEP_UP:-0}" != "1" ] || [ "$status" != "0" ]; then
    step "Stopping the endpoint"
    endpoints local down "$ENDPOINT" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=${PORT:-8765}
if python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PORT)) != 0)"; then
  # Something listens there; unless it is our own router from an earlier run, take a free port.
  if ! grep -q "\"port\": $PORT" "$STATE_DIR/$ENDPOINT/state.json" 2>/dev/null; then PORT=0; fi
fi

step "Starting the endpoint: endpoints local up $EXAMPLE --detach"
UP_JSON=$(endpoints local up "$EXAMPLE" --detach --port "$PORT" --json)
SCORING_URI=$(printf '%s' "$UP_JSON" | python -c "import json,sys; print(json.load(sys.stdin)['scoring_uri'])")
SWAGGER_URI=${SCORING_URI%/score}/swagger.json
KEY=$(endpoints get-credentials "$ENDPOINT" | python -c "import json,sys; print(json.load(sys.stdin)['primaryKey'])")
endpoints local status "$ENDPOINT"
echo
echo "scoring URI : $SCORING_URI"
echo "swagger URI : $SWAGGER_URI"
echo "primary key : $KEY   (endpoints get-credentials $ENDPOINT)"
echo "in your shell: KEY=$KEY"

step "A sample prediction (samples/red-sedan.jpg as JSON base64)"
echo "curl -H \"Authorization: Bearer \$KEY\" -H 'Content-Type: application/json' -d @$EXAMPLE/samples/request.json $SCORING_URI"
endpoints invoke "$ENDPOINT" --request-file "$EXAMPLE/samples/request.json"
echo "bob also takes an upload:  curl -H \"Authorization: Bearer \$KEY\" -H 'azureml-model-deployment: bob' -F image=@$EXAMPLE/samples/blue-suv.jpg $SCORING_URI"
curl -sS -H "Authorization: Bearer $KEY" -H 'azureml-model-deployment: bob' -F "image=@$EXAMPLE/samples/blue-suv.jpg" "$SCORING_URI"
echo
echo "without the key:  HTTP $(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d @"$EXAMPLE/samples/request.json" "$SCORING_URI")"

split() {
  python - "$SCORING_URI" "$KEY" "$EXAMPLE/samples/request.json" "$REQUESTS" "$@" <<'PY'
import collections, sys, time
import httpx
uri, key, request_file, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
body = open(request_file, "rb").read()
headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
by_deployment, by_status, answers = collections.Counter(), collections.Counter(), collections.Counter()
start = time.perf_counter()
with httpx.Client(timeout=30) as client:
    for _ in range(n):
        r = client.post(uri, content=body, headers=headers)
        by_status[r.status_code] += 1
        by_deployment[r.headers.get("azureml-model-deployment", "?")] += 1
        answers[r.text] += 1
took = time.perf_counter() - start
print(f"{n} requests in {took:.1f} s ({n / took:.0f} req/s, one at a time); status codes {dict(by_status)}")
for name, count in sorted(by_deployment.items()):
    print(f"  {name:<6} {count:>4}  {100 * count / n:5.1f} %  {'#' * round(50 * count / n)}")
for text, count in answers.most_common(3):
    print(f"  answer {text}  x{count}")
PY
}
score_lines() { grep -c '"route":"/score"' "$STATE_DIR/$ENDPOINT/logs/$1.log" 2>/dev/null || true; }

step "Traffic split over $REQUESTS requests (endpoint.yml: alice 90 / bob 10)"
split

step "Mirroring: endpoints local update $EXAMPLE --endpoint-file endpoint.mirror.yml"
endpoints local update "$EXAMPLE" --endpoint-file endpoint.mirror.yml > /dev/null
before=$(score_lines bob)
split
sleep 1
after=$(score_lines bob)
echo "  bob received $((after - before)) mirrored copies in the background (10 % of $REQUESTS); clients only saw alice"

if [ "${KEEP_UP:-0}" = "1" ]; then
  endpoints local update "$EXAMPLE" > /dev/null
  step "Left running (KEEP_UP=1): $SCORING_URI  —  stop it with: endpoints local down"
else
  echo
  echo "Done. Run it yourself: . .venv/bin/activate && endpoints local up $EXAMPLE   (Ctrl-C stops it)"
fi
