#!/usr/bin/env python3
"""forja's knowledge retrieval beside rank-bm25 on the same passages and questions.

Runs `forja bench knowledge --out WORK` (the demo council's minutes, the
generated questions, forja's hybrid / BM25 / dense results), then scores
the same questions on the same passages (WORK/chunks.jsonl: title, heading
path and text, exactly what forja indexes) with rank-bm25's BM25Okapi,
tokenised like forja's Spanish analyzer (lower case, accents folded, Snowball
stemming). A question is a hit at rank r when the r-th passage is from the
question's document and contains its answer. Prints a markdown table with
hit@1, hit@5, MRR and query latency, and the latency ratio.

The peers install into ~/.cache/forja/peers-py (pip, from PyPI).

usage: scripts/knowledge-peer.py [WORK_DIR] [FORJA] [-- extra forja bench args]
"""
import json
import os
import re
import subprocess
import sys
import time
import unicodedata

work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/forja-knowledge"
forja = sys.argv[2] if len(sys.argv) > 2 else "target/release/forja"
extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
peers = os.path.expanduser("~/.cache/forja/peers-py")
if not os.path.exists(os.path.join(peers, "rank_bm25.py")):
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", peers, "rank-bm25==0.2.2", "snowballstemmer==3.0.1"], check=True)
sys.path.insert(0, peers)
from rank_bm25 import BM25Okapi  # noqa: E402
import snowballstemmer  # noqa: E402

subprocess.run([forja, "bench", "knowledge", "--out", work, *extra], check=True, stdout=subprocess.DEVNULL)
results = json.load(open(os.path.join(work, "results.json")))
chunks = [json.loads(l) for l in open(os.path.join(work, "chunks.jsonl"))]
qa = [json.loads(l) for l in open(os.path.join(work, "qa.jsonl"))]
k = results["k"]

stem = snowballstemmer.stemmer("spanish").stemWord
stop = set("de la que el en y a los del se las por un para con no una su al lo como mas pero sus le ya o".split())


def fold(s):
    return "".join(c for c in unicodedata.normalize("NFKD", s.lower()) if not unicodedata.combining(c))


def tokens(s):
    return [stem(w) for w in re.findall(r"\w+", fold(s)) if w not in stop and len(w) <= 40]


started = time.time()
bm25 = BM25Okapi([tokens(c["text"]) for c in chunks])
index_s = time.time() - started
hit1 = hitk = 0
rr = 0.0
ms = []
for q in qa:
    t = time.perf_counter()
    scores = bm25.get_scores(tokens(q["question"]))
    top = sorted(range(len(chunks)), key=lambda i: -scores[i])[:k]
    ms.append((time.perf_counter() - t) * 1e3)
    answer = fold(q["answer"])
    for r, i in enumerate(top):
        if chunks[i]["doc"] == q["doc"] and answer in fold(chunks[i]["passage"]):
            hit1 += r == 0
            hitk += 1
            rr += 1 / (r + 1)
            break
ms.sort()
n = len(qa)
peer = {"mode": "rank-bm25", "hit@1": hit1 / n, f"hit@{k}": hitk / n, "mrr": rr / n,
        "p50_ms": ms[n // 2], "p99_ms": ms[min(n - 1, int(n * 0.99))]}
json.dump({"forja": results, "rank_bm25": peer, "rank_bm25_index_s": index_s},
          open(os.path.join(work, "peer.json"), "w"), indent=2)

print(f"{n} questions over {len(chunks)} passages ({results['sessions']} sessions), k = {k}, CPU: {results['cpu']}\n")
print(f"| retriever | hit@1 | hit@{k} | MRR | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|")
for r in results["retrieval"] + [peer]:
    name = r["mode"] if r["mode"] == "rank-bm25" else f"forja {r['mode']}"
    print(f"| {name} | {r['hit@1']:.3f} | {r[f'hit@{k}']:.3f} | {r['mrr']:.3f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
fb = next(r for r in results["retrieval"] if r["mode"] == "bm25")
print(f"\nBM25 query latency, rank-bm25 / forja (p50): {peer['p50_ms'] / fb['p50_ms']:.1f}x")
ing = results["ingest"]
print(f"forja ingest: {ing['documents']} documents, {ing['passages']} passages in {ing['seconds']:.2f} s "
      f"({ing['docs_per_s']:.1f} docs/s, embedder {ing['embedder']})")
if results.get("answers"):
    a = results["answers"]
    print(f"answers ({a['model']}, {a['questions']} questions, greedy): without RAG {a['without_rag']:.3f}, "
          f"with the top {a['passages']} BM25 passages {a['with_rag_bm25']:.3f}, top {a['passages']} hybrid {a['with_rag_hybrid']:.3f}")
if results.get("scale"):
    s = results["scale"]
    print(f"scale: {s['passages']} passages ({s['documents']} documents) ingested without embeddings in {s['ingest_s']:.1f} s "
          f"({s['ingest_docs_per_s']:.0f} docs/s); BM25 p50 {s['bm25_p50_ms']:.2f} ms, p99 {s['bm25_p99_ms']:.2f} ms; "
          f"exact scan of {s['passages']} x {s['dim']} vectors p50 {s['dense_scan_p50_ms']:.2f} ms, p99 {s['dense_scan_p99_ms']:.2f} ms")
