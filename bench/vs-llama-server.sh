#!/usr/bin/env bash
# Single-stream decode speed through the HTTP API: `forja serve` vs
# llama.cpp's `llama-server`, same GGUF, same threads, same prompt, in one
# run. Each side answers a 1-token request (prefill) and an N-token request
# with ignore_eos (greedy); decode tok/s = (N-1) / (t_N - t_1), median of
# ROUNDS alternating rounds. Prints both and the ratio forja / llama.cpp.
#
# With STREAMS (e.g. STREAMS="1 4 8"), aggregate throughput instead:
# llama-server gets `-np 8` parallel slots (2048 tokens of context each) and
# forja its default continuous batching; for each count S, S clients send
# an N-token request at once, and aggregate tok/s = S·N / (time until the
# last answer), prefill of the short prompt included; median of ROUNDS
# alternating rounds per S.
# usage: bench/vs-llama-server.sh [N_TOKENS] [ROUNDS]
#   env: THREADS (2), MODEL (the default SmolLM2 GGUF), LLAMA_SERVER, FORJA_SERVE_ARGS,
#        STREAMS (unset: single-stream decode), NP (llama-server slots: 8 with STREAMS, else 1)
#        LLAMA_ARGS (extra llama-server flags, e.g. --no-repack where llama.cpp's AMX
#        kernels crash: ggml-org/llama.cpp#20824)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-128}; ROUNDS=${2:-5}; THREADS=${THREADS:-2}; STREAMS=${STREAMS:-}
NP=${NP:-$([ -n "$STREAMS" ] && echo 8 || echo 1)}
PEERS=${FORJA_PEERS:-$HOME/.cache/forja-peers}
LLAMA_SERVER=${LLAMA_SERVER:-$(command -v llama-server || echo "$PEERS/llama.cpp/build/bin/llama-server")}
[ -x "$LLAMA_SERVER" ] || { echo "llama-server not found: run ../shared/peers/setup.sh llamacpp" >&2; exit 1; }
FORJA=${FORJA:-./target/release/forja}
[ -x "$FORJA" ] || cargo build --release -p forja
"$FORJA" models install default >/dev/null
MODEL=${MODEL:-$(ls "${FORJA_HOME:-$HOME/.cache/forja}"/models/smollm2-135m-instruct/*.gguf | head -1)}
DATA=$(mktemp -d)
cleanup() { kill "$FPID" "$LPID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
KEY=$("$FORJA" keys create --tenant bench --create-tenant --data-dir "$DATA")
# shellcheck disable=SC2086
"$FORJA" serve --port 0 --data-dir "$DATA" --model "$MODEL" --workers 0 -t "$THREADS" \
  --embedding-model none ${FORJA_SERVE_ARGS:-} 2>"$DATA/forja.log" &
FPID=$!
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086 # LLAMA_ARGS is a list of flags
"$LLAMA_SERVER" -m "$MODEL" -t "$THREADS" -c $((2048 * NP)) --port "$PORT" -np "$NP" ${LLAMA_ARGS:-} >"$DATA/llama.log" 2>&1 &
LPID=$!
for _ in $(seq 600); do grep -q "ready" "$DATA/forja.log" && break; sleep 0.2; done
FURL=$(grep -o 'http://[0-9.:]*' "$DATA/forja.log" | head -1)
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
echo "cpu: $(bench/cpu.sh), threads=$THREADS, model=$(basename "$MODEL"), N=$N, llama-server -np $NP ${LLAMA_ARGS:-}" >&2
python3 - "$FURL" "$KEY" "http://127.0.0.1:$PORT" "$N" "$ROUNDS" "$STREAMS" <<'PY'
import json, statistics, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
furl, key, lurl, n, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
streams = [int(s) for s in sys.argv[6].split()]
msgs = [{"role": "user", "content": "Write a long story about a town council meeting."}]
def ask(url, auth, max_tokens):
    body = {"model": "base", "messages": msgs, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True}
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {auth}"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        out = json.loads(r.read())
    dt = time.perf_counter() - t
    got = out["usage"]["completion_tokens"]
    assert got == max_tokens, f"{url}: asked {max_tokens}, got {got}"
    return dt
sides = {"forja": (furl, key), "llama.cpp": (lurl, "none")}
for url, auth in sides.values():  # warm-up
    ask(url, auth, 8)
if streams:
    print("| streams | forja tok/s (rounds) | llama-server tok/s (rounds) | forja / llama.cpp |")
    print("| ---: | --- | --- | ---: |")
    for s in streams:
        agg = {k: [] for k in sides}
        for _ in range(rounds):
            for name, (url, auth) in sides.items():
                with ThreadPoolExecutor(s) as pool:
                    t = time.perf_counter()
                    list(pool.map(lambda _: ask(url, auth, n), range(s)))
                    agg[name].append(s * n / (time.perf_counter() - t))
        med = {k: statistics.median(v) for k, v in agg.items()}
        row = lambda k: f"{med[k]:.1f} ({', '.join(f'{x:.1f}' for x in agg[k])})"
        print(f"| {s} | {row('forja')} | {row('llama.cpp')} | {med['forja'] / med['llama.cpp']:.2f}x |",
              flush=True)
    sys.exit(0)
rates = {k: [] for k in sides}
for _ in range(rounds):
    for name, (url, auth) in sides.items():
        t1, tn = ask(url, auth, 1), ask(url, auth, n)
        rates[name].append((n - 1) / (tn - t1))
med = {k: statistics.median(v) for k, v in rates.items()}
for k, v in rates.items():
    print(f"{k:10} decode {med[k]:7.1f} tok/s  (rounds: {', '.join(f'{x:.1f}' for x in v)})")
print(f"ratio forja / llama.cpp: {med['forja'] / med['llama.cpp']:.2f}")
PY
