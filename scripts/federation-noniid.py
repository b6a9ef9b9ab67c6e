#!/usr/bin/env python3
"""Federation on the demo task with three non-IID nodes.

Each node trains a LoRA adapter on its own slice of the council's
utterances (A: openings, agenda items, closings; B: proposals and debate;
C: votes and citizens' turns); the adapters are aggregated three ways
(exact stacking, FedIT, coordinate-wise median) and every model is scored
on one golden set over all kinds, per slice and in total (corpus WER from
the per-example word edits). A poisoned node (node C's delta scaled by 50)
is aggregated with and without norm clipping, and by the median.

usage: scripts/federation-noniid.py [WORK_DIR] [FORJA]
Prints a markdown table; writes WORK_DIR/results.json.
"""
import json
import os
import shutil
import subprocess
import sys
import time

work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/forja-federation"
forja = sys.argv[2] if len(sys.argv) > 2 else "target/release/forja"
threads = str(os.cpu_count() or 2)
os.makedirs(work, exist_ok=True)
data = os.path.join(work, "data")


def run(*args):
    t = time.time()
    subprocess.run([forja, *args], check=True, stdout=subprocess.DEVNULL)
    return time.time() - t


if not os.path.exists(os.path.join(data, "golden.jsonl")):
    run("debug", "demo-data", "--out", data)
slices = ["A", "B", "C"]
adapters = {}
for s in slices:
    out = os.path.join(work, f"node-{s}")
    if not os.path.exists(os.path.join(out, "adapter_model.safetensors")):
        secs = run("train", "--base", "default", "--data", os.path.join(data, f"train-{s}.jsonl"),
                   "--out", out, "--epochs", "2", "--seed", "1", "-t", threads)
        print(f"node {s}: trained in {secs:.0f} s", file=sys.stderr)
    adapters[f"local {s}"] = out

# Node C poisoned: the same delta scaled by 50 (lora_alpha x 50).
poisoned = os.path.join(work, "node-C-x50")
if not os.path.exists(poisoned):
    shutil.copytree(adapters["local C"], poisoned)
    cfg_path = os.path.join(poisoned, "adapter_config.json")
    cfg = json.load(open(cfg_path))
    cfg["lora_alpha"] = cfg["lora_alpha"] * 50
    json.dump(cfg, open(cfg_path, "w"))

honest = [adapters[f"local {s}"] for s in slices]
bad = honest[:2] + [poisoned]
combos = {
    "exact (A+B+C)": (["--method", "exact"], honest),
    "fedit (A+B+C)": (["--method", "fedit"], honest),
    "median (A+B+C)": (["--method", "median"], honest),
    "exact, C poisoned x50, no clip": (["--method", "exact"], bad),
    "exact, C poisoned x50, --clip 3": (["--method", "exact", "--clip", "3"], bad),
    "median, C poisoned x50": (["--method", "median"], bad),
}
for name, (flags, inputs) in combos.items():
    out = os.path.join(work, "agg-" + "".join(c if c.isalnum() else "-" for c in name))
    if not os.path.exists(os.path.join(out, "adapter_model.safetensors")):
        run("federation", "aggregate", "-m", "default", "--out", out, *flags, *inputs)
    adapters[name] = out

golden = os.path.join(data, "golden.jsonl")
results = {}
for name, adapter in [("base model", None), *adapters.items()]:
    report = os.path.join(work, "eval-" + "".join(c if c.isalnum() else "-" for c in name) + ".json")
    if not os.path.exists(report):
        args = ["eval", "-m", "default", "--golden", golden, "--report", report, "--json", "-t", threads]
        if adapter:
            args += ["--adapter", adapter]
        secs = run(*args)
        print(f"{name}: evaluated in {secs:.0f} s", file=sys.stderr)
    r = json.load(open(report))
    per = {}
    for e in r["examples"]:
        s = e["id"].split(":")[0]
        edits, words = per.get(s, (0, 0))
        per[s] = (edits + e["words"]["edits"], words + e["words"]["reference_len"])
    edits = sum(v[0] for v in per.values())
    words = sum(v[1] for v in per.values())
    results[name] = {"all": edits / words, **{s: per[s][0] / per[s][1] for s in slices}}

json.dump(results, open(os.path.join(work, "results.json"), "w"), indent=2)
print("| model | WER slice A | WER slice B | WER slice C | WER all |")
print("|---|---:|---:|---:|---:|")
for name, r in results.items():
    print(f"| {name} | {r['A']:.3f} | {r['B']:.3f} | {r['C']:.3f} | {r['all']:.3f} |")
