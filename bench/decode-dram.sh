#!/usr/bin/env bash
# Decode against DRAM bandwidth: a model too big for the CPU's caches.
#
# SmolLM2-135M (96 MB as Q4_1) fits in the last-level cache of many
# servers, so its decode measures cache bandwidth. This writes a
# TinyLlama-1.1B-shaped GGUF with random weights (22 layers, hidden 2048,
# intermediate 5632, Q4_1: 0.6 GB; noise as text, real bytes per token)
# once, then runs bench/vs-llamacpp.sh on it: forja against llama-bench
# side by side, and forja's decode as a fraction of the read bandwidth of
# as many bytes, measured in the same run on the same threads.
#
# usage: bench/decode-dram.sh [LAYERS HIDDEN INTER TYPE]
# env:   everything bench/vs-llamacpp.sh takes (defaults here: P=16 N=64 ROUNDS=3 REPS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=${1:-22} HIDDEN=${2:-2048} INTER=${3:-5632} TYPE=${4:-q4_1}
DIR=${FORJA_BENCH_DIR:-$HOME/.cache/forja/bench}
MODEL=$DIR/synth-${LAYERS}x${HIDDEN}x${INTER}-$TYPE.gguf
if [ ! -s "$MODEL" ]; then
  mkdir -p "$DIR"
  cargo build --release -q -p forja-engine --example synth_gguf
  ./target/release/examples/synth_gguf "$MODEL.tmp" "$LAYERS" "$HIDDEN" "$INTER" "$TYPE" >&2
  mv "$MODEL.tmp" "$MODEL"
fi
P=${P:-16} N=${N:-64} ROUNDS=${ROUNDS:-3} REPS=${REPS:-2} exec bench/vs-llamacpp.sh "$MODEL"
