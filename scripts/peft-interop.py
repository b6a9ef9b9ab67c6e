#!/usr/bin/env python3
"""Prove that forja's LoRA adapters interoperate with Hugging Face PEFT, both ways.

The script builds a tiny Llama with `forja pretrain` (f32, Hugging Face layout)
and compares the logits of every position of a fixed token sequence, computed
by forja (`forja debug logits`) and by transformers + PEFT (f32, eval mode):

  base          the model alone: forja reads what transformers reads
  forja->peft   an adapter trained by `forja train` (r=8, all-linear), loaded
                with peft.PeftModel.from_pretrained
  peft->forja   adapters made by peft.get_peft_model with random non-zero A
                and B (init_lora_weights=False), saved with save_pretrained and
                loaded by forja: plain LoRA on q_proj,v_proj,down_proj,
                rsLoRA (alpha/sqrt(r)) on k_proj,o_proj,gate_proj,up_proj, and
                per-module rank_pattern/alpha_pattern on layer 1 only

Every comparison must agree within --tol (default 1e-4) in max |delta logit|.
So that agreement proves something, the trained adapter's lora_B must be
non-zero and every adapter must move the logits by far more than --tol.

Run (after `make build` and `../shared/peers/setup.sh torch`):

    ~/.cache/forja-peers/venv/bin/python scripts/peft-interop.py [--forja PATH] [--workdir DIR]

Exit status: 0 all checks passed, 1 a check failed, 2 missing Python packages.
"""
import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
try:
    import numpy as np
    import torch
    import peft
    import transformers
    from safetensors.numpy import load_file
except ImportError as e:
    print(f"peft-interop: missing {e.name}; install them with ../shared/peers/setup.sh torch", file=sys.stderr)
    sys.exit(2)

REPO = Path(__file__).resolve().parent.parent
VOCAB = 300
FAILURES = []
NOTES = []


def forja(exe, *args):
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"peft-interop: `forja {' '.join(map(str, args))}` failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout


def forja_logits(exe, model, ids, adapter=None):
    args = ["debug", "logits", "--model", model, "--ids", ",".join(map(str, ids))]
    if adapter:
        args += ["--adapter", adapter]
    out = json.loads(forja(exe, *args))
    assert out["ids"] == ids, "forja echoed other ids"
    return np.asarray(out["logits"], dtype=np.float64)  # [positions, vocab]


class Captured(logging.Handler):
    """Collects transformers/peft log warnings so the summary can list them."""

    def emit(self, record):
        NOTES.append(f"{record.name}: {record.getMessage()}")


def quietly(what, fn):
    """Runs fn, recording every Python warning and transformers/peft log line it emits."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    NOTES.extend(f"{what}: {w.category.__name__}: {w.message}" for w in caught)
    return value


def torch_logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].double().numpy()


def check(name, ours, theirs, tol):
    if ours.shape != theirs.shape:
        FAILURES.append(name)
        print(f"{name:<22} shape forja {ours.shape} vs torch {theirs.shape}  FAIL")
        return
    diff = np.abs(ours - theirs)
    ok = diff.max() <= tol
    pos, tok = np.unravel_index(diff.argmax(), diff.shape)
    where = "" if ok else f"  (worst at position {pos}, token {tok}: forja {ours[pos, tok]:.9g} torch {theirs[pos, tok]:.9g})"
    print(f"{name:<22} max|Δlogit| = {diff.max():.1e}  {'OK' if ok else 'FAIL'}{where}")
    if not ok:
        FAILURES.append(name)


def check_moves(name, with_adapter, base, floor):
    moved = np.abs(with_adapter - base).max()
    ok = moved >= floor
    print(f"{name:<22} max|Δlogit| vs base = {moved:.1e}  {'OK' if ok else 'FAIL (adapter does not change the logits)'}")
    if not ok:
        FAILURES.append(name)


def corpus(path):
    rng = random.Random(7)
    subjects = ["the cat", "a dog", "my friend", "the teacher", "our team", "the old man", "a small bird", "she", "he"]
    verbs = ["walks to", "looks at", "talks about", "runs past", "thinks of", "writes to", "sings near", "waits for"]
    objects = ["the market", "a green house", "the blue sea", "the quiet town", "a long road", "the garden", "a red book"]
    tails = ["today.", "every day.", "in the evening.", "with great care.", "before dinner.", "after the rain."]
    lines = [f"{rng.choice(subjects).capitalize()} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}" for _ in range(250)]
    path.write_text("\n".join(lines) + "\n")


def train_data(path):
    rng = random.Random(11)
    with path.open("w") as f:
        for _ in range(48):
            n = rng.randint(1, 9)
            if rng.random() < 0.5:
                ex = {"prompt": f"How many birds wait by the river? {n}", "completion": f" There are {n} small birds today."}
            else:
                ex = {"messages": [{"role": "user", "content": f"Count to {n}."},
                                   {"role": "assistant", "content": " ".join(str(i) for i in range(1, n + 1))}]}
            f.write(json.dumps(ex) + "\n")


def load_base(base):
    return quietly("from_pretrained", lambda: transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32))


def peft_to_forja(exe, base, work, ids, tol, name, **lora):
    torch.manual_seed(1234)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM", **lora)
    model = quietly("get_peft_model", lambda: peft.get_peft_model(load_base(base), cfg))
    out = work / name
    quietly("save_pretrained", lambda: model.save_pretrained(out))
    theirs = torch_logits(model, ids)
    check(f"peft->forja {name}", forja_logits(exe, base, ids, out), theirs, tol)
    return theirs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forja", type=Path, default=REPO / "target/release/forja", help="forja binary")
    ap.add_argument("--workdir", type=Path, help="keep the model and adapters here (default: a temp dir)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max |delta logit| allowed")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    exe = args.forja.resolve()
    if not exe.is_file():
        sys.exit(f"peft-interop: no forja binary at {exe} (run `make build` or pass --forja)")
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_default_handler()  # its warnings are collected and printed as notes
    for name in ("transformers", "peft"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.addHandler(Captured())
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, forja {exe}")

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="peft-interop-")
    work = (args.workdir or Path(tmp.name)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base, adapter, threads = work / "base", work / "forja-adapter", ["--threads", args.threads]

    corpus(work / "corpus.txt")
    forja(exe, "pretrain", "--corpus", work / "corpus.txt", "--out", base, "--vocab-size", VOCAB, "--hidden", 64,
          "--intermediate", 128, "--layers", 2, "--heads", 4, "--kv-heads", 2, "--seq-len", 64, "--max-steps", 20, *threads)
    train_data(work / "train.jsonl")
    forja(exe, "train", "--base", base, "--data", work / "train.jsonl", "--out", adapter, "--max-steps", 40, "--lora-r", 8,
          "--lora-alpha", 16, "--target-modules", "all-linear", "--lr", 1e-2, *threads)
    ids = random.Random(3).sample(range(1, VOCAB), 24)
    floor = 100 * args.tol  # an adapter must move the logits far beyond the tolerance

    # The trained adapter must have learned something: a zero lora_B is a no-op.
    tensors = load_file(adapter / "adapter_model.safetensors")
    b_max = max(float(np.abs(t).max()) for k, t in tensors.items() if "lora_B" in k)
    n_b = sum("lora_B" in k for k in tensors)
    print(f"{'forja adapter lora_B':<22} {n_b} tensors, max|B| = {b_max:.1e}  {'OK' if b_max > 0 else 'FAIL (all zero)'}")
    if n_b == 0 or b_max == 0:
        FAILURES.append("forja adapter lora_B")

    # Base model: both implementations must read the same weights the same way.
    hf = load_base(base)
    base_logits = torch_logits(hf, ids)
    check("base (no adapter)", forja_logits(exe, base, ids), base_logits, args.tol)

    # forja -> PEFT: the adapter forja trained, as PEFT loads it.
    model = quietly("PeftModel.from_pretrained", lambda: peft.PeftModel.from_pretrained(hf, adapter))
    theirs = torch_logits(model, ids)
    check("forja->peft", forja_logits(exe, base, ids, adapter), theirs, args.tol)
    check_moves("forja adapter effect", theirs, base_logits, floor)

    # PEFT -> forja: random non-zero adapters made and saved by PEFT.
    lora = peft_to_forja(exe, base, work, ids, args.tol, "lora", target_modules=["q_proj", "v_proj", "down_proj"])
    check_moves("peft lora effect", lora, base_logits, floor)
    rs = peft_to_forja(exe, base, work, ids, args.tol, "rslora", use_rslora=True,
                       target_modules=["k_proj", "o_proj", "gate_proj", "up_proj"])
    check_moves("peft rslora effect", rs, base_logits, floor)
    pat = peft_to_forja(exe, base, work, ids, args.tol, "patterns", target_modules=["q_proj", "up_proj"],
                        rank_pattern={"up_proj": 2}, alpha_pattern={"q_proj": 32}, layers_to_transform=[1])
    check_moves("peft patterns effect", pat, base_logits, floor)

    for note in dict.fromkeys(NOTES):
        print(f"note: {note}")
    if tmp:
        tmp.cleanup()
    if FAILURES:
        print(f"FAIL: {len(FAILURES)} check(s) failed: {', '.join(FAILURES)}")
        return 1
    print(f"PASS: forja and PEFT agree within {args.tol:g} on base, forja->peft, peft->forja (lora, rslora, patterns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
