#!/usr/bin/env bash
# forja vs datasketch: MinHash signature throughput and LSH near-dedup quality.
#
# Generates a deterministic synthetic corpus of N docs with planted near-
# duplicates and their exact 5-word-shingle Jaccard (bench/minhash_corpus.py),
# then runs datasketch (MinHash.bulk + MinHashLSH, bench/minhash_datasketch.py)
# and `forja bench minhash` on it, alternating for ROUNDS rounds. Prints the
# median signature docs/s of each side, the ratio forja / datasketch, the LSH
# bands x rows and the precision/recall of each side's candidate pairs
# against the truth (bench/minhash_score.py).
#
# usage: bench/vs-datasketch.sh [N]   (N docs, default 20000)
# env:   THREADS (1: forja's threads; datasketch is single-threaded) SEED (1)
#        WORDS (300) NUM_PERM (128) NGRAM (5) THRESHOLD (0.8) ROUNDS (3)
#        BENCH_DIR (target/bench) FORJA (target/release/forja)
#        PYTHON (venv of ../shared/peers/setup.sh py)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${FORJA_PEERS:-$HOME/.cache/forja-peers}
PYTHON=${PYTHON:-$PEERS/venv/bin/python}
N=${1:-20000} THREADS=${THREADS:-1} SEED=${SEED:-1} WORDS=${WORDS:-300} ROUNDS=${ROUNDS:-3}
NUM_PERM=${NUM_PERM:-128} NGRAM=${NGRAM:-5} THRESHOLD=${THRESHOLD:-0.8}
DIR=${BENCH_DIR:-target/bench}
"$PYTHON" -c 'import datasketch, numpy' 2>/dev/null ||
  { echo "datasketch not found for $PYTHON: run ../shared/peers/setup.sh py" >&2; exit 1; }
FORJA=${FORJA:-./target/release/forja}
[ -x "$FORJA" ] || cargo build --release -p forja
"$FORJA" bench minhash --help >/dev/null 2>&1 ||
  { echo "$FORJA has no 'bench minhash' subcommand yet: rebuild with cargo build --release -p forja" >&2; exit 1; }
mkdir -p "$DIR"
CORPUS=$DIR/minhash-n$N-w$WORDS-s$SEED.jsonl TRUTH=${CORPUS%.jsonl}.truth.tsv
[ -f "$TRUTH" ] || "$PYTHON" bench/minhash_corpus.py "$CORPUS" --docs "$N" --words "$WORDS" --seed "$SEED"
echo "corpus: $CORPUS ($N docs, ~$WORDS words, $(wc -l <"$TRUTH") truth pairs with J >= 0.5)" >&2
echo "num_perm $NUM_PERM  ngram $NGRAM  threshold $THRESHOLD  rounds: $ROUNDS  forja threads: $THREADS (datasketch: 1)" >&2
echo "cpu: $(bench/cpu.sh)  $("$PYTHON" -c 'import datasketch; print("datasketch", datasketch.__version__)')" >&2
ARGS=(--num-perm "$NUM_PERM" --ngram "$NGRAM" --threshold "$THRESHOLD")
results=$DIR/minhash-results.jsonl
: >"$results"
for r in $(seq "$ROUNDS"); do
  "$PYTHON" bench/minhash_datasketch.py "$CORPUS" "${ARGS[@]}" --pairs "$DIR/minhash-pairs-datasketch.tsv" |
    tail -1 | sed 's/^{/{"who": "datasketch", /' >>"$results"
  "$FORJA" bench minhash --input "$CORPUS" -t "$THREADS" "${ARGS[@]}" --pairs "$DIR/minhash-pairs-forja.tsv" |
    tail -1 | sed 's/^{/{"who": "forja", /' >>"$results"
  echo "round $r/$ROUNDS: $(tail -2 "$results" | python3 -c 'import json, sys
print("  ".join("%s %.0f docs/s" % (j["who"], j["sig_docs_per_s"]) for j in map(json.loads, sys.stdin)))')" >&2
done
for who in datasketch forja; do
  "$PYTHON" bench/minhash_score.py "$TRUTH" "$DIR/minhash-pairs-$who.tsv" --threshold "$THRESHOLD" |
    sed "s/^{/{\"who\": \"$who\", \"score\": true, /" >>"$results"
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
run = {w: [r for r in rows if r["who"] == w and "score" not in r] for w in ("datasketch", "forja")}
score = {r["who"]: r for r in rows if "score" in r}
med = {w: statistics.median(r["sig_docs_per_s"] for r in rs) for w, rs in run.items()}
lsh = {w: statistics.median(r["lsh_seconds"] for r in rs) for w, rs in run.items()}
d, f = med["datasketch"], med["forja"]
print("| engine | signatures docs/s (median) | forja / datasketch | LSH s | b x r | pairs | precision | recall | recall J>=t+0.05 | FP J<t-0.1 |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for w in ("datasketch", "forja"):
    last, s = run[w][-1], score[w]
    ratio = f"{f / d:.1f}x" if w == "forja" else ""
    print(f"| {w} | {med[w]:,.0f} | {ratio} | {lsh[w]:.2f} | {last['bands']} x {last['rows']} | {last['pairs']} "
          f"| {s['precision']:.3f} | {s['recall']:.3f} | {s['recall_clear']:.3f} | {s['fp_far']} |")
print(f"\npositives (J >= {score['forja']['threshold']}): {score['forja']['positives']}", file=sys.stderr)
PY
