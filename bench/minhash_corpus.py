# Writes a deterministic synthetic corpus for the MinHash near-dedup benchmark
# (bench/vs-datasketch.sh) and the exact ground truth of its similar pairs.
#
# Docs are ~WORDS pseudo-words (some accented, so shingles are real UTF-8)
# drawn from a Zipf-like vocabulary. About 5% of docs are edited copies of an
# earlier doc (substitutions, insertions, deletions; the edit count is chosen
# so the 5-word-shingle Jaccard spreads over ~0.45-0.99; a copy may itself be
# copied). OUT.truth.tsv lists every pair i<j (0-based line numbers) whose
# exact Jaccard of 5-word-shingle sets is >= 0.5, with the value. It is exact
# over all pairs: an inverted index finds every pair sharing a shingle, and
# the script checks that no unplanted pair reaches 0.5 (stats on stderr).
#
# usage: minhash_corpus.py OUT.jsonl [--docs N] [--words 300] [--seed S]
import argparse
import json
import sys

import numpy as np

NGRAM = 5
SYLLABLES = ("ka to ri mu se na lo pe di gu ba ne so ti ra me ju fo "
             "va le zi ño ré xa cho llu qui gue tá pí bó").split()


def vocabulary(rng, size):
    words = set()
    while len(words) < size:
        k = rng.integers(1, 5)
        words.add("".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), k)))
    words = sorted(words)
    rng.shuffle(words)
    return words


def edit(rng, ids, target_j, zipf):
    """Copy of ids with edits chosen so shingle Jaccard lands near target_j."""
    n_sh = len(ids) - NGRAM + 1
    # each scattered edit breaks ~NGRAM shingles on each side of the pair
    k = max(1, round(n_sh * (1 - target_j) / (NGRAM * (1 + target_j))))
    out = list(ids)
    for _ in range(k):
        pos = int(rng.integers(0, len(out)))
        op = rng.random()
        if op < 0.6:
            out[pos] = int(rng.choice(len(zipf), p=zipf))
        elif op < 0.8:
            out.insert(pos, int(rng.choice(len(zipf), p=zipf)))
        elif len(out) > NGRAM + 1:
            del out[pos]
    return out


def shingle_codes(ids, vocab_size):
    """Unique 5-gram codes of a doc (exact: vocab_size**5 < 2**64)."""
    a = np.asarray(ids, dtype=np.uint64)
    if len(a) < NGRAM:
        return np.unique(a[:0])
    code = np.zeros(len(a) - NGRAM + 1, dtype=np.uint64)
    for k in range(NGRAM):
        code = code * np.uint64(vocab_size) + a[k:len(a) - NGRAM + 1 + k]
    return np.unique(code)


def sharing_pairs(docs, vocab_size):
    """Exact Jaccard of every pair of docs sharing at least one shingle: (i, j, J) arrays."""
    sets = [shingle_codes(d, vocab_size) for d in docs]
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    codes = np.concatenate(sets)
    owner = np.repeat(np.arange(len(docs), dtype=np.int64), sizes)
    order = np.argsort(codes, kind="stable")
    codes, owner = codes[order], owner[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(codes)]))
    shared = starts[ends - starts >= 2], ends[ends - starts >= 2]
    n = len(docs)
    keys = []
    for s, e in zip(*shared):
        g = owner[s:e]  # sorted ascending (stable sort over doc order)
        i, j = np.triu_indices(len(g), 1)
        keys.append(g[i] * n + g[j])
    keys, inter = np.unique(np.concatenate(keys or [np.zeros(0, np.int64)]), return_counts=True)
    i, j = keys // n, keys % n
    return i, j, inter / (sizes[i] + sizes[j] - inter)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dup-rate", type=float, default=0.05)
    ap.add_argument("--vocab", type=int, default=5000)
    args = ap.parse_args()
    assert args.vocab ** NGRAM < 2 ** 64
    rng = np.random.default_rng(args.seed)
    vocab = vocabulary(rng, args.vocab)
    zipf = 1.0 / np.arange(1, args.vocab + 1) ** 1.05
    zipf /= zipf.sum()

    docs, source = [], []
    for d in range(args.docs):
        if d > 0 and rng.random() < args.dup_rate:
            src = int(rng.integers(0, d))
            docs.append(edit(rng, docs[src], rng.uniform(0.45, 0.995), zipf))
            source.append(src)
        else:
            n = int(rng.integers(int(args.words * 0.8), int(args.words * 1.2) + 1))
            docs.append(rng.choice(args.vocab, size=n, p=zipf).tolist())
            source.append(-1)

    with open(args.out, "w", encoding="utf-8") as f:
        for d, ids in enumerate(docs):
            text = " ".join(vocab[i] for i in ids)
            f.write(json.dumps({"id": f"d{d:06d}", "text": text}, ensure_ascii=False) + "\n")

    si, sj, sjac = sharing_pairs(docs, args.vocab)
    # union-find over planted copies: pairs inside a cluster are "planted"
    root = list(range(len(docs)))
    def find(x):
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x
    for d, s in enumerate(source):
        if s >= 0:
            root[find(d)] = find(s)
    planted = np.array([find(a) == find(b) for a, b in zip(si.tolist(), sj.tolist())], dtype=bool)
    other_max = float(sjac[~planted].max()) if (~planted).any() else 0.0
    keep = sjac >= 0.5
    pairs = list(zip(si[keep].tolist(), sj[keep].tolist(), sjac[keep].tolist()))
    unplanted = [p for p, pl in zip(pairs, planted[keep]) if not pl]
    truth = args.out.removesuffix(".jsonl") + ".truth.tsv"
    with open(truth, "w") as f:
        for i, j, jac in pairs:
            f.write(f"{i}\t{j}\t{jac:.6f}\n")
    js = np.array([p[2] for p in pairs])
    hist = np.histogram(js, bins=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0001])[0].tolist() if len(js) else []
    print(json.dumps({"docs": len(docs), "copies": sum(s >= 0 for s in source),
                      "pairs_sharing_a_shingle": len(si), "truth_pairs": len(pairs),
                      "unplanted_pairs_ge_0.5": len(unplanted),
                      "max_unplanted_jaccard": round(other_max, 4),
                      "truth_hist_0.5_0.6_0.7_0.8_0.9_1": hist, "truth": truth}), file=sys.stderr)
    if unplanted:
        sys.exit(f"unexpected: {len(unplanted)} unplanted pairs with J >= 0.5, e.g. {unplanted[:3]}")


if __name__ == "__main__":
    main()
