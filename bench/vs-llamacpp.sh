#!/usr/bin/env bash
# forja vs llama.cpp on the same GGUF, same threads, side by side in one run.
#
# Runs llama-bench and `forja bench generate` alternately for ROUNDS rounds
# (pp = one prefill pass over P random tokens, tg = N tokens decoded one at
# a time, as llama-bench defines them) and prints the median of each side
# and the ratio forja / llama.cpp. Alternating rounds spreads the noise of a
# shared machine over both sides.
#
# usage: bench/vs-llamacpp.sh [MODEL.gguf]
# env:   THREADS (2) P (512) N (128) ROUNDS (5) REPS (3, repetitions per round)
#        LLAMA_BENCH (llama-bench from ../shared/peers/setup.sh llamacpp)
#        FORJA_BIN (a forja binary to measure instead of building this tree's)
#        LLAMA_ARGS (extra llama-bench flags, e.g. "--repack 0" where llama.cpp's
#        AMX kernels crash: ggml-org/llama.cpp#20824)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${FORJA_PEERS:-$HOME/.cache/forja-peers}
LLAMA_BENCH=${LLAMA_BENCH:-$(command -v llama-bench || echo "$PEERS/llama.cpp/build/bin/llama-bench")}
LLAMA_ARGS=${LLAMA_ARGS:-} THREADS=${THREADS:-2} P=${P:-512} N=${N:-128} ROUNDS=${ROUNDS:-5} REPS=${REPS:-3}
[ -x "$LLAMA_BENCH" ] || { echo "llama-bench not found: run ../shared/peers/setup.sh llamacpp" >&2; exit 1; }
if [ -z "${FORJA_BIN:-}" ]; then cargo build --release -q -p forja; fi
FORJA=${FORJA_BIN:-./target/release/forja}
MODEL=${1:-$($FORJA models path default)}
echo "model: $MODEL  threads: $THREADS  pp$P tg$N  rounds: $ROUNDS x $REPS reps" >&2
echo "cpu: $(bench/cpu.sh)  llama.cpp: $("$LLAMA_BENCH" --version 2>&1 | head -1) ${LLAMA_ARGS}" >&2
results=$(mktemp)
for r in $(seq "$ROUNDS"); do
  # shellcheck disable=SC2086 # LLAMA_ARGS is a list of flags
  out=$("$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$P" -n "$N" -r "$REPS" $LLAMA_ARGS -o json 2>/dev/null) || {
    echo "llama-bench failed (exit $?); if it crashes in its AMX kernels (ggml-org/llama.cpp#20824), run with LLAMA_ARGS='--repack 0'" >&2
    exit 1
  }
  echo "$out" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    kind = "pp" if t["n_gen"] == 0 else "tg"
    print("llama.cpp", kind, t["avg_ts"])' >>"$results"
  $FORJA bench generate -m "$MODEL" -t "$THREADS" -p "$P" -n "$N" -r "$REPS" --json 2>/dev/null |
    python3 -c '
import json, sys
j = json.load(sys.stdin)
print("forja pp", j["pp_tps"]); print("forja tg", j["tg_tps"])
if j.get("decode_bandwidth_fraction") is not None:
    print("forja frac", j["decode_bandwidth_fraction"], j["read_bandwidth_gbs"], j["decode_weight_bytes"])' >>"$results"
  echo "round $r/$ROUNDS done" >&2
done
python3 - "$results" "$P" "$N" "$THREADS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
fracs = [r[2:] for r in rows if r[1] == "frac"]
rows = [r for r in rows if r[1] != "frac"]
P, N = sys.argv[2], sys.argv[3]
med = {}
for who in ("llama.cpp", "forja"):
    for kind in ("pp", "tg"):
        xs = [float(v) for w, k, v in rows if w == who and k == kind]
        med[who, kind] = (statistics.median(xs), min(xs), max(xs))
print(f"| test | llama.cpp tok/s (median, min-max) | forja tok/s (median, min-max) | forja / llama.cpp |")
print(f"| --- | ---: | ---: | ---: |")
for kind, label in (("pp", f"pp{P} (prompt)"), ("tg", f"tg{N} (decode)")):
    l, f = med["llama.cpp", kind], med["forja", kind]
    print(f"| {label} | {l[0]:.1f} ({l[1]:.1f}-{l[2]:.1f}) | {f[0]:.1f} ({f[1]:.1f}-{f[2]:.1f}) | {f[0]/l[0]:.2f}x |")
if fracs:
    f = sorted(float(x[0]) for x in fracs)
    bw = sorted(float(x[1]) for x in fracs)
    mb = float(fracs[0][2]) / 1e6
    print(f"\nforja decode reads {mb:.1f} MB of weights per token: {100*statistics.median(f):.0f} % "
          f"({100*f[0]:.0f}-{100*f[-1]:.0f} %) of what {sys.argv[4]} threads read streaming through "
          f"as many bytes ({statistics.median(bw):.1f} GB/s, {bw[0]:.1f}-{bw[-1]:.1f})")
PY
rm -f "$results"
