#!/usr/bin/env bash
# Two-tenant fairness on the default model (SmolLM2-135M-Instruct, quantized,
# serving only): tenant `quiet`'s 1-token chat latency alone and while tenant
# `flood` saturates the node (bench/fairness.py), interleaved round by round.
# With FORJA_BASELINE=/path/to/an/older/forja both binaries serve at once
# (each idle while the other is measured) and are measured in alternation.
# usage: bench/fairness.sh [ROUNDS] [SAMPLES_PER_PHASE] [FLOOD_CLIENTS] [PHASE_SECONDS] [TIMEOUT_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
FORJA=${FORJA:-./target/release/forja}
[ -x "$FORJA" ] || cargo build --release -p forja
"$FORJA" models install default >/dev/null
ROOT=$(mktemp -d); PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$ROOT"' EXIT

# start LABEL BINARY: a node with tenants `flood` and `quiet`; adds its target spec.
TARGETS=()
start() {
    local label=$1 bin=$2 data="$ROOT/$1" ct=() extra=()
    # Older binaries created tenants with their keys and had no admission cap.
    "$bin" keys create --help | grep -q -- --create-tenant && ct=(--create-tenant)
    "$bin" serve --help | grep -q -- --tenant-max-inflight && extra=(--tenant-max-inflight 32)
    local flood quiet
    flood=$("$bin" keys create --tenant flood "${ct[@]}" --data-dir "$data" 2>/dev/null)
    quiet=$("$bin" keys create --tenant quiet "${ct[@]}" --data-dir "$data" 2>/dev/null)
    "$bin" serve --port 0 --data-dir "$data" --workers 0 --embedding-model none \
        --max-batch 8 "${extra[@]}" >/dev/null 2>"$data/serve.log" &
    PIDS+=($!)
    for _ in $(seq 600); do grep -q "ready" "$data/serve.log" && break; sleep 0.2; done
    TARGETS+=("$label=$(grep -o 'http://[0-9.:]*' "$data/serve.log" | head -1),$flood,$quiet")
}

start forja "$FORJA"
[ -n "${FORJA_BASELINE:-}" ] && start baseline "$FORJA_BASELINE"
echo "cpu: $(bench/cpu.sh); forja $(git rev-parse --short HEAD)" >&2
python3 bench/fairness.py --rounds "${1:-3}" --samples "${2:-8}" --clients "${3:-4}" --phase-s "${4:-120}" \
    --timeout-s "${5:-900}" "${TARGETS[@]}"
