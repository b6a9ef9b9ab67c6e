# The datasketch side of bench/vs-datasketch.sh: MinHash signatures and LSH
# candidate pairs for a JSONL corpus, the way datasketch users write it.
#
# Shingles are ' '.join of NGRAM consecutive whitespace-split words, UTF-8
# encoded (a doc shorter than NGRAM words is one shingle of all its words).
# sig_seconds times text -> shingles -> MinHash.bulk (JSON parsing excluded;
# shingle_seconds is the shingling part alone); lsh_seconds times inserting
# every signature into MinHashLSH and querying each. Candidate pairs i<j
# (0-based line numbers) go to --pairs; one JSON line of stats to stdout.
#
# usage: minhash_datasketch.py IN.jsonl [--num-perm 128] [--ngram 5]
#        [--threshold 0.8] --pairs OUT.tsv
import argparse
import json
import time

import datasketch
from datasketch import MinHash, MinHashLSH


def shingles(text, n):
    words = text.split()
    if len(words) < n:
        return [" ".join(words).encode("utf-8")]
    return list({" ".join(words[i:i + n]).encode("utf-8") for i in range(len(words) - n + 1)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--pairs", required=True)
    args = ap.parse_args()
    with open(args.input, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]

    t0 = time.perf_counter()
    sh = [shingles(t, args.ngram) for t in texts]
    t1 = time.perf_counter()
    sigs = MinHash.bulk(sh, num_perm=args.num_perm)
    t2 = time.perf_counter()

    lsh = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm)
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    pairs = set()
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    t3 = time.perf_counter()

    with open(args.pairs, "w") as f:
        for i, j in sorted(pairs):
            f.write(f"{i}\t{j}\n")
    print(json.dumps({
        "docs": len(texts), "sig_seconds": round(t2 - t0, 4),
        "sig_docs_per_s": round(len(texts) / (t2 - t0), 1),
        "shingle_seconds": round(t1 - t0, 4), "lsh_seconds": round(t3 - t2, 4),
        "bands": lsh.b, "rows": lsh.r, "pairs": len(pairs),
        "engine": f"datasketch {datasketch.__version__}"}))


if __name__ == "__main__":
    main()
