# Scores near-duplicate candidate pairs against the exact truth written by
# bench/minhash_corpus.py, for bench/vs-datasketch.sh.
#
# Positives are truth pairs with Jaccard >= THRESHOLD. Reports precision and
# recall, recall_clear on the clear positives (J >= THRESHOLD + 0.05), and fp_far,
# the candidates far below the threshold (J < THRESHOLD - 0.1; pairs absent
# from the truth file have J < 0.5). One JSON line on stdout.
#
# usage: minhash_score.py TRUTH.tsv PAIRS.tsv [--threshold 0.8]
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("truth")
    ap.add_argument("pairs")
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()
    t = args.threshold
    jac = {}
    with open(args.truth) as f:
        for line in f:
            i, j, v = line.split()
            jac[int(i), int(j)] = float(v)
    cand = set()
    with open(args.pairs) as f:
        for line in f:
            i, j = map(int, line.split()[:2])
            cand.add((min(i, j), max(i, j)))
    pos = {p for p, v in jac.items() if v >= t}
    clear = {p for p, v in jac.items() if v >= t + 0.05}
    tp = len(cand & pos)
    far_fp = sum(1 for p in cand if jac.get(p, 0.0) < t - 0.1)
    print(json.dumps({
        "threshold": t, "candidates": len(cand), "positives": len(pos), "true_positives": tp,
        "precision": round(tp / len(cand), 4) if cand else 1.0,
        "recall": round(tp / len(pos), 4) if pos else 1.0,
        "recall_clear": round(len(cand & clear) / len(clear), 4) if clear else 1.0,
        "fp_far": far_fp,
    }))


if __name__ == "__main__":
    main()
