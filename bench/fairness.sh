#!/usr/bin/env bash
# Two-tenant fairness on the default model (SmolLM2-135M-Instruct, quantized,
# serving only): tenant `quiet`'s 1-token chat latency alone and while tenant
# `flood` saturates the node (bench/fairness.py), interleaved round by round.
# usage: bench/fairness.sh [ROUNDS] [SAMPLES_PER_PHASE] [FLOOD_CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
FORJA=${FORJA:-./target/release/forja}
[ -x "$FORJA" ] || cargo build --release -p forja
"$FORJA" models install default >/dev/null
DATA=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
FLOOD=$("$FORJA" keys create --tenant flood --create-tenant --data-dir "$DATA" 2>/dev/null)
QUIET=$("$FORJA" keys create --tenant quiet --create-tenant --data-dir "$DATA" 2>/dev/null)
"$FORJA" serve --port 0 --data-dir "$DATA" --workers 0 --embedding-model none \
    --max-batch 8 --tenant-max-inflight 32 2>"$DATA/serve.log" &
PID=$!
for _ in $(seq 600); do grep -q "ready" "$DATA/serve.log" && break; sleep 0.2; done
URL=$(grep -o 'http://[0-9.:]*' "$DATA/serve.log" | head -1)
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(grep -o -m1 'avx512[a-z]*\|avx2' /proc/cpuinfo | head -1); forja $(git rev-parse --short HEAD)" >&2
python3 bench/fairness.py "$URL" "$FLOOD" "$QUIET" "${1:-3}" "${2:-8}" "${3:-4}"
