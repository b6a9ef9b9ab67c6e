#!/usr/bin/env bash
# Latency before/during/after a hot-swap under concurrent chat load, on the
# default model (SmolLM2-135M-Instruct), with the number of failed requests.
# usage: bench/serve-swap.sh [CONCURRENCY] [PHASE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
FORJA=${FORJA:-./target/release/forja}
[ -x "$FORJA" ] || cargo build --release -p forja
"$FORJA" models install default >/dev/null
DATA=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
KEY=$("$FORJA" keys create --tenant bench --create-tenant --data-dir "$DATA")
"$FORJA" serve --port 0 --data-dir "$DATA" --workers 1 --embedding-model none 2>"$DATA/serve.log" &
PID=$!
for _ in $(seq 600); do grep -q "ready" "$DATA/serve.log" && break; sleep 0.2; done
URL=$(grep -o 'http://[0-9.:]*' "$DATA/serve.log" | head -1)
echo "cpu: $(bench/cpu.sh); forja $(git rev-parse --short HEAD)" >&2
python3 bench/serve_load.py "$URL" "$KEY" "${1:-4}" "${2:-20}"
