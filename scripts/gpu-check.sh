#!/usr/bin/env bash
# The GPU check: what forja's CUDA path and the TRL backend do on a machine
# with an NVIDIA GPU, in a few minutes, side by side with the CPU path and
# with PyTorch + PEFT on the same GPU. Nothing is downloaded.
#
#   1. forja built with `--features cuda` (FORJA_BIN, or built here when
#      cargo and nvcc are present; nvcc can come from PyPI's
#      nvidia-cuda-nvcc wheel).
#   2. Inference: the logits of every position of a fixed token sequence on
#      the GPU and on the CPU (dequantized f32 weights): max |delta|.
#   3. LoRA training: the same STEPS steps (same data, seed, batch) on the
#      GPU and on the CPU: the two loss curves, max |delta|.
#   4. Training tok/s: `forja bench train` on the GPU and on the CPU, and
#      PyTorch + PEFT (bench/train_pytorch.py) on the GPU, alternated for
#      ROUNDS rounds, when PYTHON has torch with CUDA.
#
# usage: scripts/gpu-check.sh              (env below)
# env:   FORJA_BIN (a forja built with --features cuda)  MODEL (default)
#        DEVICE (cuda:0; `cpu` runs the whole script on the CPU, a dry run
#        of the script itself)  PYTHON (python3)  STEPS (20)  ROUNDS (3)
#        BATCH (4) SEQ (256)  OUT (where gpu-check.md goes: . or $OUT)
#        LOGIT_TOL (1e-2)  LOSS_TOL (1e-2)
# exit:  0 everything ran and agreed; 1 a disagreement or a failure; 3 no
#        NVIDIA GPU on this machine (nothing was measured).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda:0} MODEL=${MODEL:-default} PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-20} ROUNDS=${ROUNDS:-3} BATCH=${BATCH:-4} SEQ=${SEQ:-256}
LOGIT_TOL=${LOGIT_TOL:-1e-2} LOSS_TOL=${LOSS_TOL:-1e-2}
OUT=${OUT:-.}
mkdir -p "$OUT"
REPORT="$OUT/gpu-check.md"
WORK=$(mktemp -d)
trap 'cat "$REPORT"; rm -rf "$WORK"' EXIT
status=0
say() { echo "$*" >>"$REPORT"; }
bad() { say "- **FAILED**: $*"; status=1; }

: >"$REPORT"
say "# forja GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
say ""
say "- cpu: $(bench/cpu.sh 2>/dev/null || uname -m)"
if [ "$DEVICE" != cpu ]; then
  if ! gpus=$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>/dev/null); then
    say "- gpu: none (nvidia-smi is missing or sees no GPU): nothing measured"
    exit 3
  fi
  say "- gpu: $gpus"
fi

# 1. The binary.
FORJA=${FORJA_BIN:-}
if [ -z "$FORJA" ]; then
  if command -v cargo >/dev/null && { [ "$DEVICE" = cpu ] || command -v nvcc >/dev/null; }; then
    features=()
    if [ "$DEVICE" != cpu ]; then
      cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
      export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$cap}
      features=(--features cuda)
    fi
    cargo build --release -q -p forja "${features[@]}" || { bad "cargo build ${features[*]}"; exit 1; }
    FORJA=./target/release/forja
  else
    say "- no FORJA_BIN and no cargo + nvcc to build one: nothing measured"
    exit 1
  fi
fi
say "- forja: $($FORJA --version) ($FORJA)"
$FORJA models install "$MODEL" >/dev/null || { bad "forja models install $MODEL"; exit 1; }

# 2. Inference: logits on DEVICE vs CPU.
say ""
say "## Inference: logits, $DEVICE vs cpu"
ids="1,504,3060,281,15,2,1467,335,17,1019,91,2681,7,28,1930,30"
for d in cpu "$DEVICE"; do
  $FORJA debug logits --model "$MODEL" --dequantize --device "$d" --ids "$ids" >"$WORK/logits-${d//:/}.json" 2>"$WORK/err" ||
    bad "forja debug logits --device $d: $(tail -1 "$WORK/err")"
done
python3 - "$WORK/logits-cpu.json" "$WORK/logits-${DEVICE//:/}.json" "$LOGIT_TOL" >>"$REPORT" <<'PY' || status=1
import json, sys
try:
    a, b = (json.load(open(p))["logits"] for p in sys.argv[1:3])
except (OSError, ValueError) as e:
    print(f"- **FAILED**: no logits to compare ({e})"); sys.exit(1)
d = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
scale = max(abs(x) for r in a for x in r)
ok = d <= float(sys.argv[3])
print(f"- max |delta logit| over {len(a)} positions x {len(a[0])} ids: {d:.2e} (logits up to {scale:.1f}; tolerance {sys.argv[3]}): {'agree' if ok else '**DISAGREE**'}")
sys.exit(0 if ok else 1)
PY

# 3. LoRA training: the loss curves on DEVICE and on the CPU.
say ""
say "## LoRA training: $STEPS steps, $DEVICE vs cpu (same data, seed, batch $BATCH)"
python3 - "$WORK/train.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(64):
        f.write(json.dumps({"messages": [
            {"role": "user", "content": f"What is the code of item {i}?"},
            {"role": "assistant", "content": f"Item {i} has code FJ-{(i * 7919) % 1000:03d}."}]}) + "\n")
PY
for d in cpu "$DEVICE"; do
  $FORJA train --base "$MODEL" --data "$WORK/train.jsonl" --out "$WORK/train-${d//:/}" --max-steps "$STEPS" \
    --batch-size "$BATCH" --seed 7 --lora-r 8 --save-every 0 --device "$d" >/dev/null 2>"$WORK/err" ||
    bad "forja train --device $d: $(tail -1 "$WORK/err")"
done
python3 - "$WORK/train-cpu/events.jsonl" "$WORK/train-${DEVICE//:/}/events.jsonl" "$LOSS_TOL" "$DEVICE" >>"$REPORT" <<'PY' || status=1
import json, sys
def losses(p):
    out = {}
    for line in open(p):
        e = json.loads(line)
        e = e.get("Step", e) if isinstance(e, dict) else {}
        if isinstance(e, dict) and "loss" in e and "step" in e and "lr" in e:
            out[e["step"]] = e["loss"]
    return out
try:
    a, b = losses(sys.argv[1]), losses(sys.argv[2])
except (OSError, ValueError) as e:
    print(f"- **FAILED**: no loss curves to compare ({e})"); sys.exit(1)
steps = sorted(set(a) & set(b))
if not steps:
    print("- **FAILED**: no common steps in the two runs"); sys.exit(1)
d = max(abs(a[s] - b[s]) for s in steps)
ok = d <= float(sys.argv[3])
print(f"- loss, step {steps[0]} -> {steps[-1]}: cpu {a[steps[0]]:.4f} -> {a[steps[-1]]:.4f}, {sys.argv[4]} {b[steps[0]]:.4f} -> {b[steps[-1]]:.4f}")
print(f"- max |delta loss| over {len(steps)} steps: {d:.2e} (tolerance {sys.argv[3]}): {'agree' if ok else '**DISAGREE**'}")
sys.exit(0 if ok else 1)
PY

# 4. Training tok/s, side by side.
say ""
say "## LoRA training tok/s (batch $BATCH x $SEQ, r=16 all-linear, $ROUNDS rounds, median)"
HF=$WORK/hf
$FORJA models export "$MODEL" --out "$HF" >/dev/null 2>&1 || bad "forja models export $MODEL"
torch_dev=""
if "$PYTHON" -c "import torch, peft, transformers, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  torch_dev=$DEVICE
elif [ "$DEVICE" = cpu ] && "$PYTHON" -c "import torch, peft, transformers" 2>/dev/null; then
  torch_dev=cpu
else
  say "- PyTorch + PEFT: not measured ($PYTHON has no torch with CUDA)"
fi
rows=$WORK/rows
for r in $(seq "$ROUNDS"); do
  for d in "$DEVICE" cpu; do
    $FORJA bench train -m "$HF" --device "$d" -b "$BATCH" -s "$SEQ" --steps 3 --lora-r 16 --target-modules all-linear --json 2>/dev/null |
      python3 -c "import json,sys; print('forja-$d', json.load(sys.stdin)['tok_per_s'])" >>"$rows" || bad "forja bench train --device $d"
  done
  if [ -n "$torch_dev" ]; then
    "$PYTHON" bench/train_pytorch.py "$HF" --device "$torch_dev" --batch-size "$BATCH" --seq-len "$SEQ" --steps 3 --lora-r 16 2>/dev/null |
      python3 -c "import json,sys; print('pytorch-$torch_dev', json.load(sys.stdin)['tok_per_s'])" >>"$rows" || bad "bench/train_pytorch.py --device $torch_dev"
  fi
done
python3 - "$rows" >>"$REPORT" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    who, v = line.split()
    rows.setdefault(who, []).append(float(v))
print("\n| engine | tok/s (median, min-max) |\n| --- | ---: |")
for who, xs in rows.items():
    print(f"| {who} | {statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f}) |")
PY
say ""
say "exit status: $status"
exit $status
