#!/usr/bin/env python3
"""EleutherAI's lm-evaluation-harness against `forja serve`, checked against its own `hf` backend.

usage: lmeval-check.py SERVER_URL API_KEY MODEL HF_DIR [options]

Runs the same log-likelihood tasks twice with lm-eval (`lm_eval.simple_evaluate`):

  api  model type `local-completions` against SERVER_URL/v1/completions (forja),
       which must answer `echo: true, logprobs: 1, max_tokens: 1` with the
       prompt's token log-probabilities (OpenAI's legacy completions shape);
       the tokenizer is read from HF_DIR, the prompts are sent as token ids
  hf   model type `hf` on HF_DIR (f32 Hugging Face directory), device cpu,
       dtype float32: the reference

and compares them sample by sample (log_samples):

  forja_mc       40 hand-written multiple-choice questions (scripts/lmeval/):
                 every choice's log-likelihood must agree within --tol nats,
                 the per-question correctness and the accuracies must be equal
  forja_rolling  the same items as whole texts (loglikelihood_rolling, the
                 first token conditioned on the BOS alone): each text's
                 log-likelihood within --tol nats per token

It also counts `is_greedy` disagreements (lm-eval derives it from
top_logprobs) and fails on them unless --ignore-greedy. Prints a table;
exits 0 when everything agrees, 1 on a disagreement, 2 when lm-eval,
torch or transformers are missing.

Everything runs offline (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE): the tasks read
scripts/lmeval/forja-mc.jsonl, the models and tokenizer come from HF_DIR.

Run (after `../shared/peers/setup.sh torch` and
`~/.cache/forja-peers/venv/bin/pip install "lm-eval[api]==0.4.13"`; the api
extra brings tenacity, which local-completions needs):

    forja models export default --out /tmp/smollm2-f32      # the f32 weights forja serves
    forja serve ... &                                          # with that model, an API key
    ~/.cache/forja-peers/venv/bin/python scripts/lmeval-check.py \\
        http://127.0.0.1:8080 KEY default /tmp/smollm2-f32

SERVER_URL may end in /v1 or /v1/completions. --skip-api runs the reference
half alone (no server needed); --string-prompts makes lm-eval send text
instead of token ids (tokenized_requests=False), which also tests forja's
tokenizer: it must give lm-eval's token split back, without adding a BOS, and
read "<|im_start|>" at the start of forja_rolling's texts as that special token.

The same tasks from the lm_eval CLI (from the repo root, since the YAMLs name
the JSONL relative to it):

    OPENAI_API_KEY=KEY lm_eval --model local-completions --include_path scripts/lmeval \\
        --tasks forja_mc,forja_rolling --model_args model=default,base_url=http://127.0.0.1:8080/v1/completions,tokenizer=/tmp/smollm2-f32,tokenizer_backend=huggingface
"""
import argparse
import logging
import math
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASK_DIR = Path(__file__).resolve().parent / "lmeval"
TASKS = {"forja_mc": "forja_mc.yaml", "forja_rolling": "forja_rolling.yaml"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("server_url", help="forja's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("api_key", help="sent as `Authorization: Bearer KEY` (lm-eval reads OPENAI_API_KEY)")
    p.add_argument("model", help="the served model name, sent as `model`")
    p.add_argument("hf_dir", help="f32 Hugging Face directory of the same weights (and its tokenizer)")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of %(default)s")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="max |delta log-likelihood| in nats: per choice (forja_mc), per token (forja_rolling)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per /v1/completions request and hf batch")
    p.add_argument("--string-prompts", action="store_true", help="send text prompts (tokenized_requests=False)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items of each task")
    p.add_argument("--ignore-greedy", action="store_true", help="report is_greedy disagreements without failing")
    p.add_argument("--skip-api", action="store_true", help="run the hf reference only (no server)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per HTTP request")
    return p.parse_args()


def task_specs(names):
    """The task YAMLs as inline configs, with the JSONL path made absolute (any cwd works)."""
    import yaml

    specs = []
    for name in names:
        spec = yaml.safe_load((TASK_DIR / TASKS[name]).read_text())
        files = spec["dataset_kwargs"]["data_files"]
        for split, rel in files.items():
            files[split] = str(TASK_DIR / Path(rel).name)
        specs.append(spec)
    return specs


def evaluate(lm_eval, model, model_args, args, names):
    from lm_eval.tasks import TaskManager

    t0 = time.monotonic()
    out = lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=task_specs(names),
        task_manager=TaskManager(),
        batch_size=args.batch_size,
        device="cpu",
        limit=args.limit,
        log_samples=True,
        bootstrap_iters=0,
        verbosity="WARNING",
    )
    return out, time.monotonic() - t0


def per_sample(out, task):
    """doc_id -> ([(loglikelihood, is_greedy or None for rolling), one per request], the sample)."""
    res = {}
    for s in out["samples"][task]:
        rows = []
        for r in s["resps"]:
            v = r[0]
            if isinstance(v, (tuple, list)):
                rows.append((float(v[0]), bool(v[1])))
            else:
                rows.append((float(v), None))
        res[s["doc_id"]] = (rows, s)
    return dict(sorted(res.items()))


def compare(task, api, ref, args, tokenizer):
    """Returns (table row, list of failure strings)."""
    a, r = per_sample(api, task), per_sample(ref, task)
    fails = []
    if a.keys() != r.keys():
        return None, [f"{task}: the two runs scored different documents"]
    worst, worst_ratio, worst_at, n_ll, greedy_diff, correct_diff = 0.0, -1.0, "-", 0, 0, 0
    for doc_id, (rows_a, sa) in a.items():
        rows_r, sr = r[doc_id]
        if len(rows_a) != len(rows_r):
            fails.append(f"{task} doc {doc_id}: {len(rows_a)} vs {len(rows_r)} requests")
            continue
        for j, ((lla, ga), (llr, gr)) in enumerate(zip(rows_a, rows_r)):
            n_ll += 1
            d = abs(lla - llr) if math.isfinite(lla) else math.inf
            allowed = args.tol
            if task == "forja_rolling":
                text = sr["arguments"][0][0]  # the whole text, scored from the BOS on
                allowed = args.tol * len(tokenizer(text, add_special_tokens=False).input_ids)
            if d / allowed > worst_ratio:
                worst, worst_ratio, worst_at = d, d / allowed, f"doc {doc_id}/{j}"
            if not d <= allowed:
                fails.append(f"{task} doc {doc_id} request {j}: api {lla:.6f} hf {llr:.6f} "
                             f"|delta| {d:.2e} > {allowed:.1e}")
            if ga is not None and ga != gr:
                greedy_diff += 1
                msg = f"{task} doc {doc_id} request {j}: is_greedy api {ga} hf {gr}"
                if not args.ignore_greedy:
                    fails.append(msg)
                else:
                    print(f"lmeval-check: note: {msg}", file=sys.stderr)
        for m in ("acc", "acc_norm"):
            if m in sa and sa[m] != sr[m]:
                correct_diff += 1
                fails.append(f"{task} doc {doc_id}: {m} api {sa[m]} hf {sr[m]}")
    ra, rr = api["results"][task], ref["results"][task]
    metric = "acc,none" if "acc,none" in rr else "word_perplexity,none"
    ma, mr = ra[metric], rr[metric]
    if metric.startswith("acc") and ma != mr:
        fails.append(f"{task}: {metric} api {ma} hf {mr}")
    row = (task, len(a), n_ll, metric.split(",")[0], ma, mr, worst, worst_at, greedy_diff + correct_diff)
    return row, fails


def main():
    args = parse_args()
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        sys.exit(f"lmeval-check: unknown task(s) {unknown}; known: {list(TASKS)}")
    hf_dir = str(Path(args.hf_dir).resolve())
    try:
        import lm_eval
        import torch  # noqa: F401
        import transformers
        if not args.skip_api:
            import aiohttp, requests, tenacity  # noqa: F401,E401  (local-completions needs them)
    except ImportError as e:
        print(f"lmeval-check: {e}; install torch, transformers and lm-eval[api] "
              "(../shared/peers/setup.sh torch; pip install 'lm-eval[api]')", file=sys.stderr)
        sys.exit(2)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)

    url = args.server_url.rstrip("/")
    if not url.endswith("/v1/completions"):
        url = (url if url.endswith("/v1") else url + "/v1") + "/completions"
    # lm-eval's local-completions sends `Authorization: Bearer $OPENAI_API_KEY`.
    os.environ["OPENAI_API_KEY"] = args.api_key

    ref, t_ref = evaluate(lm_eval, "hf", {"pretrained": hf_dir, "dtype": "float32"}, args, names)
    print(f"lmeval-check: lm-eval {version('lm_eval')}, hf half {t_ref:.1f}s", file=sys.stderr)
    if args.skip_api:
        for t in names:
            res = ref["results"][t]
            shown = {k: v for k, v in res.items() if k.endswith(",none") and "stderr" not in k}
            print(f"{t}: {len(ref['samples'][t])} docs, {shown}")
        return 0

    api_args = {
        "model": args.model,
        "base_url": url,
        "tokenizer": hf_dir,
        # "auto" would probe SERVER/tokenizer_info and SERVER/tokenize first
        "tokenizer_backend": "huggingface",
        "tokenized_requests": not args.string_prompts,
        "num_concurrent": 1,
        "max_retries": 1,
        "timeout": args.timeout,
    }
    api, t_api = evaluate(lm_eval, "local-completions", api_args, args, names)
    print(f"lmeval-check: api half {t_api:.1f}s ({url}, model {args.model!r}, "
          f"{'text' if args.string_prompts else 'token-id'} prompts, batch {args.batch_size})",
          file=sys.stderr)

    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    rows, fails = [], []
    for t in names:
        row, f = compare(t, api, ref, args, tokenizer)
        fails += f
        if row:
            rows.append(row)

    # flips: is_greedy or per-question correctness disagreements
    head = ("task", "docs", "requests", "metric", "api", "hf", "max|dLL|", "at", "flips")
    fmt = "{:<14} {:>5} {:>8} {:<16} {:>10} {:>10} {:>9} {:>10} {:>5}"
    print(fmt.format(*head))
    for t, nd, nr, m, ma, mr, w, at, flips in rows:
        print(fmt.format(t, nd, nr, m, f"{ma:.4f}", f"{mr:.4f}", f"{w:.1e}", at, flips))
    if fails:
        for f in fails[:20]:
            print(f"lmeval-check: FAIL {f}", file=sys.stderr)
        if len(fails) > 20:
            print(f"lmeval-check: ... and {len(fails) - 20} more", file=sys.stderr)
        return 1
    print(f"lmeval-check: ok (tol {args.tol:g} nats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
