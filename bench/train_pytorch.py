#!/usr/bin/env python3
"""PyTorch + PEFT side of bench/vs-pytorch-train.sh: LoRA training tok/s.

Same model directory (exported by `forja models export`), same LoRA
settings, batch, sequence length, threads and random tokens as
`forja bench train`. Prints one JSON object.

With --precision bf16 the forward and backward run under
torch.autocast(dtype=bfloat16) (oneDNN's AMX kernels where the CPU has
them); the master weights, LoRA parameters and optimizer stay f32.

usage: bench/train_pytorch.py MODEL_DIR --threads N --batch-size B --seq-len T --steps S --lora-r R --targets all-linear [--precision f32|bf16]
"""
import contextlib
import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch-size", type=int, default=4)
ap.add_argument("--seq-len", type=int, default=256)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--lora-r", type=int, default=16)
ap.add_argument("--targets", default="all-linear")
ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (scripts/gpu-check.sh)")
ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
a = ap.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
targets = "all-linear" if a.targets == "all-linear" else a.targets.split(",")
cfg = LoraConfig(r=a.lora_r, lora_alpha=2 * a.lora_r, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
model = get_peft_model(model, cfg).to(a.device)
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ids = torch.randint(0, model.config.vocab_size, (a.batch_size, a.seq_len)).to(a.device)
sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)


def autocast():
    if a.precision == "bf16":
        return torch.autocast(device_type=a.device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step():
    with autocast():
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


step()  # warm-up
sync()
t = time.perf_counter()
for _ in range(a.steps):
    step()
sync()
dt = time.perf_counter() - t
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(json.dumps({
    "engine": "pytorch+peft", "torch": torch.__version__, "device": a.device, "threads": a.threads, "batch_size": a.batch_size,
    "seq_len": a.seq_len, "steps": a.steps, "tok_per_s": a.batch_size * a.seq_len * a.steps / dt,
    "trainable_params": trainable, "attn": model.config._attn_implementation, "precision": a.precision,
}))
