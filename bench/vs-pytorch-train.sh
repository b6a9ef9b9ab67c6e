#!/usr/bin/env bash
# forja vs PyTorch + PEFT: LoRA training throughput, side by side in one run.
#
# Both sides train the same model (the built-in SmolLM2 exported to a
# Hugging Face directory, f32), with the same LoRA rank and targets, batch,
# sequence length, threads and random tokens (loss on every position), one
# warm-up step then STEPS timed optimizer steps. The sides alternate for
# ROUNDS rounds to spread a shared machine's noise over both; the script
# prints the median tok/s of each side and the ratio forja / PyTorch.
#
# usage: bench/vs-pytorch-train.sh
# env:   THREADS (2) BATCH (4) SEQ (256) STEPS (3) ROUNDS (3) LORA_R (16)
#        TARGETS (all-linear) PRECISION (f32, or bf16: forja on AMX tiles,
#        PyTorch under torch.autocast bfloat16) PYTHON (venv of ../shared/peers/setup.sh torch)
#        FORJA_BIN (a forja binary to measure instead of building this tree's)
#        TORCH_MALLOC (GLIBC_TUNABLES for the PyTorch side; default: glibc keeps freed
#        memory instead of unmapping it, which on some VMs took PyTorch from
#        118-161 to 161-261 tok/s, the effect Intel's CPU tuning guide gets from
#        jemalloc/tcmalloc; "" runs it untuned)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${FORJA_PEERS:-$HOME/.cache/forja-peers}
PYTHON=${PYTHON:-$PEERS/venv/bin/python}
THREADS=${THREADS:-2} BATCH=${BATCH:-4} SEQ=${SEQ:-256} STEPS=${STEPS:-3} ROUNDS=${ROUNDS:-3}
LORA_R=${LORA_R:-16} TARGETS=${TARGETS:-all-linear} PRECISION=${PRECISION:-f32}
"$PYTHON" -c 'import torch, peft, transformers' 2>/dev/null ||
  { echo "PyTorch + PEFT not found for $PYTHON: run ../shared/peers/setup.sh torch" >&2; exit 1; }
if [ -z "${FORJA_BIN:-}" ]; then cargo build --release -q -p forja; fi
FORJA=${FORJA_BIN:-./target/release/forja}
$FORJA models install default >/dev/null
HF=${HF_DIR:-${FORJA_HOME:-$HOME/.cache/forja}/bench/smollm2-hf}
[ -f "$HF/model.safetensors" ] || $FORJA models export default --out "$HF"
echo "model: $HF  threads: $THREADS  batch $BATCH x $SEQ tokens  LoRA r=$LORA_R $TARGETS  precision $PRECISION  rounds: $ROUNDS x $STEPS steps" >&2
echo "cpu: $(bench/cpu.sh)  $("$PYTHON" -c 'import torch, peft; print("torch", torch.__version__, "peft", peft.__version__)')" >&2
results=$(mktemp)
for r in $(seq "$ROUNDS"); do
  $FORJA bench train -m "$HF" -t "$THREADS" -b "$BATCH" -s "$SEQ" --steps "$STEPS" \
    --lora-r "$LORA_R" --target-modules "$TARGETS" --precision "$PRECISION" --json 2>/dev/null |
    python3 -c 'import json, sys; j = json.load(sys.stdin); print("forja", j["tok_per_s"], j["trainable_params"])' >>"$results"
  GLIBC_TUNABLES=${TORCH_MALLOC-glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184} \
    "$PYTHON" bench/train_pytorch.py "$HF" --threads "$THREADS" --batch-size "$BATCH" --seq-len "$SEQ" \
    --steps "$STEPS" --lora-r "$LORA_R" --targets "$TARGETS" --precision "$PRECISION" 2>/dev/null |
    python3 -c 'import json, sys; j = json.load(sys.stdin); print("pytorch", j["tok_per_s"], j["trainable_params"])' >>"$results"
  echo "round $r/$ROUNDS: $(tail -2 "$results" | tr '\n' ' ')" >&2
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med, params = {}, {}
for who in ("pytorch", "forja"):
    xs = [float(v) for w, v, _ in rows if w == who]
    med[who] = (statistics.median(xs), min(xs), max(xs))
    params[who] = {p for w, _, p in rows if w == who}
if params["pytorch"] != params["forja"]:
    print(f"warning: trainable parameters differ: {params}", file=sys.stderr)
p, f = med["pytorch"], med["forja"]
print("| engine | tok/s (median, min-max) | forja / PyTorch |")
print("| --- | ---: | ---: |")
print(f"| PyTorch + PEFT | {p[0]:.1f} ({p[1]:.1f}-{p[2]:.1f}) | |")
print(f"| forja | {f[0]:.1f} ({f[1]:.1f}-{f[2]:.1f}) | {f[0]/p[0]:.2f}x |")
PY
rm -f "$results"
