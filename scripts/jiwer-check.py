#!/usr/bin/env python3
"""WER and CER of a predictions file as jiwer computes them.

Usage: jiwer-check.py PREDICTIONS.jsonl [standard|none]

Each line is {"reference": ..., "prediction": ...}. Prints one JSON object
{"wer": ..., "cer": ..., "jiwer": version}. `none` uses jiwer's default
transforms (wer_default / cer_default); `standard` first lower-cases and
removes punctuation (jiwer.ToLowerCase, jiwer.RemovePunctuation), which is
what `forja eval --normalization standard` does. The test
crates/forja/tests/it/eval_cli.rs compares these numbers with `forja eval
--predictions FILE --json` to 1e-9. jiwer comes from PyPI
(`make setup-test` installs jiwer==4.0.0 under ~/.cache/forja/py).
"""
import json
import sys

import jiwer


def main():
    path = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "standard"
    refs, hyps = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                refs.append(row["reference"])
                hyps.append(row["prediction"])
    if mode == "none":
        wt, ct = jiwer.wer_default, jiwer.cer_default
    elif mode == "standard":
        pre = [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
        wt = jiwer.Compose(pre + [jiwer.ReduceToListOfListOfWords()])
        ct = jiwer.Compose(pre + [jiwer.ReduceToListOfListOfChars()])
    else:
        sys.exit(f"unknown normalization {mode!r}: use standard or none")
    wer = jiwer.wer(refs, hyps, reference_transform=wt, hypothesis_transform=wt)
    cer = jiwer.cer(refs, hyps, reference_transform=ct, hypothesis_transform=ct)
    print(json.dumps({"wer": wer, "cer": cer, "jiwer": jiwer.__version__ if hasattr(jiwer, "__version__") else "?"}))


if __name__ == "__main__":
    main()
