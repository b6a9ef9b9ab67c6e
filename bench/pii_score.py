# Scores PII predictions against the gold labels of bench/pii_corpus.py, for
# bench/vs-presidio.sh.
#
# Per type and micro-averaged precision / recall / F1. Overlap match: a
# prediction is correct when it overlaps a gold entity of the same type, a
# gold entity is found when a prediction of its type overlaps it. Exact
# match: same type and same span. Types with gold entities that the system
# never predicts are "unsupported": micro_all counts their misses,
# micro_supported leaves them out, so a system that covers fewer types is
# compared both on what it does and on everything. Predicted types absent
# from the gold set count as false positives in both micros.
# Prints one JSON line, or a markdown table with --table.
#
# --errors N prints up to N missed / spurious spans per type to stderr.
#
# usage: pii_score.py GOLD.jsonl PRED.jsonl [--types T,T] [--table] [--errors N]
import argparse
import json
import sys
from collections import defaultdict


def load(path, texts=None):
    with open(path, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    if texts is not None:
        texts.update((d["id"], d["text"]) for d in docs)
    return {d["id"]: d["entities"] for d in docs}


def prf(tp_p, n_p, tp_g, n_g):
    p = tp_p / n_p if n_p else 0.0
    r = tp_g / n_g if n_g else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gold")
    ap.add_argument("pred")
    ap.add_argument("--types", help="comma-separated types to score (default: all)")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--errors", type=int, default=0)
    args = ap.parse_args()
    texts = {}
    gold, pred = load(args.gold, texts), load(args.pred)
    errors = defaultdict(list)
    keep = set(args.types.split(",")) if args.types else None
    missing = set(gold) - set(pred)
    if missing:
        raise SystemExit(f"{len(missing)} gold docs have no prediction line, e.g. {sorted(missing)[:3]}")
    # per type: gold, pred, pred overlapping, gold overlapped, pred exact, gold exact
    c = defaultdict(lambda: [0] * 6)
    for doc_id, gs in gold.items():
        ps = pred[doc_id]
        if keep is not None:
            gs = [e for e in gs if e["type"] in keep]
            ps = [e for e in ps if e["type"] in keep]
        spans = lambda es, t: [(e["start"], e["end"]) for e in es if e["type"] == t]
        for t in {e["type"] for e in gs} | {e["type"] for e in ps}:
            g, p = spans(gs, t), spans(ps, t)
            ov = lambda a, b: a[0] < b[1] and b[0] < a[1]
            k = c[t]
            k[0] += len(g)
            k[1] += len(p)
            k[2] += sum(any(ov(x, y) for y in g) for x in p)
            k[3] += sum(any(ov(x, y) for y in p) for x in g)
            k[4] += sum(x in g for x in p)
            k[5] += sum(x in p for x in g)
            if args.errors:
                text = texts[doc_id]
                show = lambda x: f"{doc_id} [{x[0]}:{x[1]}] {text[max(0, x[0] - 25):x[0]]!r} >>{text[x[0]:x[1]]!r}<< {text[x[1]:x[1] + 15]!r}"
                errors[t, "missed"] += [show(x) for x in g if not any(ov(x, y) for y in p)]
                errors[t, "spurious"] += [show(x) for x in p if not any(ov(x, y) for y in g)]
    for (t, kind), xs in sorted(errors.items()):
        print(f"{t} {kind} ({len(xs)}):", *xs[:args.errors], sep="\n  ", file=sys.stderr)
    types = {}
    for t, (ng, np_, tpp, tpg, exp, exg) in sorted(c.items()):
        types[t] = {"gold": ng, "pred": np_, **prf(tpp, np_, tpg, ng),
                    "exact_precision": round(exp / np_, 4) if np_ else 0.0,
                    "exact_recall": round(exg / ng, 4) if ng else 0.0}
    unsupported = sorted(t for t, v in types.items() if v["pred"] == 0)

    def micro(ts):
        s = [sum(c[t][i] for t in ts) for i in range(6)]
        return {"gold": s[0], "pred": s[1], **prf(s[2], s[1], s[3], s[0]),
                "exact_precision": round(s[4] / s[1], 4) if s[1] else 0.0,
                "exact_recall": round(s[5] / s[0], 4) if s[0] else 0.0}
    out = {"types": types, "unsupported": unsupported, "micro_all": micro(list(c)),
           "micro_supported": micro([t for t in c if t not in unsupported])}
    if not args.table:
        print(json.dumps(out))
        return
    print("| type | gold | pred | P | R | F1 | exact P | exact R |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = list(types.items()) + [("micro (all types)", out["micro_all"]),
                                  ("micro (supported types)", out["micro_supported"])]
    for t, v in rows:
        print(f"| {t} | {v['gold']} | {v['pred']} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} "
              f"| {v['exact_precision']:.3f} | {v['exact_recall']:.3f} |")
    if unsupported:
        print(f"\nunsupported (never predicted): {', '.join(unsupported)}")


if __name__ == "__main__":
    main()
