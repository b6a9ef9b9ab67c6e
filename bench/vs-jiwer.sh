#!/usr/bin/env bash
# WER/CER scoring speed: `forja eval --predictions` vs jiwer 4.0.0 on the
# same generated corpus, in one run; prints both times and the ratio, and
# checks that the numbers agree. Needs jiwer (make setup-test installs it
# under ~/.cache/forja/py) and a release build (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
PY=${FORJA_PYTHONPATH:-$HOME/.cache/forja/py}
FORJA=${FORJA:-./target/release/forja}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/preds.jsonl" "$N" <<'PY'
import json, random, sys
random.seed(1)
words = "el pleno aprobó la moción del concejal con doce votos a favor y tres en contra sesión acta".split()
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        ref = [random.choice(words) for _ in range(random.randint(8, 40))]
        hyp = [w if random.random() > 0.15 else random.choice(words) for w in ref if random.random() > 0.05]
        f.write(json.dumps({"reference": " ".join(ref), "prediction": " ".join(hyp)}, ensure_ascii=False) + "\n")
PY
t0=$(date +%s.%N)
j=$(PYTHONPATH="$PY" python3 scripts/jiwer-check.py "$tmp/preds.jsonl" none)
t1=$(date +%s.%N)
f=$("$FORJA" eval --predictions "$tmp/preds.jsonl" --metrics wer,cer --json --normalization none --embedding-model none)
t2=$(date +%s.%N)
python3 - "$j" "$f" "$t0" "$t1" "$t2" "$N" <<'PY'
import json, sys
j, f = json.loads(sys.argv[1]), json.loads(sys.argv[2])
t0, t1, t2, n = map(float, sys.argv[3:7])
tj, tf = t1 - t0, t2 - t1
assert abs(j["wer"] - f["wer"]) < 1e-9 and abs(j["cer"] - f["cer"]) < 1e-9, (j, f)
print(f"{int(n)} pairs  wer {f['wer']:.6f}  cer {f['cer']:.6f} (equal)")
print(f"jiwer 4.0.0 (process incl. import): {tj:.2f} s   forja eval (process): {tf:.2f} s   forja/jiwer speed: {tj/tf:.2f}x")
PY
