#!/usr/bin/env python3
"""Record llama.cpp's greedy output as a test fixture for forja.

Starts llama-server (from ../shared/peers/setup.sh llamacpp) on loopback
with llama.cpp's default settings and, for each prompt of a fixed pool
(raw completions and chat turns), records the prompt tokens (/tokenize) and
the first 48 greedy tokens (/completion, top-k 1, ignore_eos).
forja's test `smollm2::greedy_matches_llama_cpp` replays them.

A 135M-parameter 4-bit model has many near-ties between its two best
tokens; llama.cpp itself changes its greedy output on many of these prompts
when only its numerics change (flash attention on/off, f16 or f32 KV
cache; run with --stability to see it). The test therefore checks agreement
where the answer is well conditioned; see the test's documentation.

usage: scripts/llamacpp-greedy-fixture.py MODEL.gguf OUT.json [--stability]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

N = 48
CONFIGS = {
    "default": [],
    "no-flash-attn": ["-fa", "off"],
    "f32-kv": ["-fa", "off", "-ctk", "f32", "-ctv", "f32"],
}
SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def chat(q):
    return SYSTEM + f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


POOL = [
    ("raw", "The capital of France is"),
    ("raw", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("raw", "Once upon a time, in a small village by the sea,"),
    ("raw", "El pleno del ayuntamiento aprobó por unanimidad"),
    ("raw", "The three primary colors are"),
    ("raw", "import numpy as np\n\ndef softmax(x):\n"),
    ("raw", "Water boils at 100 degrees Celsius because"),
    ("raw", "The history of the Roman Empire"),
    ("raw", "To make a cup of tea, first"),
    ("raw", "SELECT name, email FROM users WHERE"),
    ("raw", "Photosynthesis is the process by which"),
    ("raw", "1, 2, 3, 4, 5,"),
    ("chat", chat("What are three uses of a paperclip?")),
    ("chat", chat("What is the capital of France? Answer in one sentence.")),
    ("chat", chat("Write a haiku about the sea.")),
    ("chat", chat("Explain what a prime number is.")),
    ("chat", chat("Give me a recipe for pancakes.")),
    ("chat", chat("Translate 'good morning' into Spanish.")),
    ("chat", chat("List the planets of the solar system.")),
    ("chat", chat("How do I reverse a list in Python?")),
    ("raw", "a, b, c, d, e,"),
    ("raw", "Monday, Tuesday, Wednesday,"),
    ("raw", "January, February, March,"),
    ("raw", "def add(a, b):\n    return a + b\n\ndef subtract(a, b):\n"),
    ("raw", "<html>\n<head>\n<title>"),
    ("raw", "#include <stdio.h>\n\nint main() {\n"),
    ("raw", "for i in range(10):\n"),
    ("raw", "The quick brown fox jumps over the lazy dog. The quick brown fox"),
    ("raw", "2 + 2 = 4\n3 + 3 = 6\n4 + 4 ="),
    ("raw", "{\"name\": \"Alice\", \"age\": 30, \"city\":"),
    ("raw", "class Stack:\n    def __init__(self):\n"),
    ("raw", "Q: What is 10 times 10?\nA:"),
    ("chat", chat("Count from one to ten.")),
    ("chat", chat("What is 2 + 2?")),
    ("chat", chat("Write a Python function that adds two numbers.")),
    ("chat", chat("Say hello.")),
    ("chat", chat("What color is the sky on a clear day?")),
    ("chat", chat("Name the days of the week.")),
    ("chat", chat("Who wrote Romeo and Juliet?")),
    ("chat", chat("What is the boiling point of water?")),
]


def post(port, path, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(req, timeout=300))


def run_config(server, model, flags):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", "2", "-c", "2048", "-np", "1", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        out = []
        for kind, text in POOL:
            toks = post(port, "/tokenize", {"content": text, "add_special": kind == "raw", "parse_special": True})["tokens"]
            r = post(port, "/completion", {
                "prompt": toks, "n_predict": N, "temperature": 0, "top_k": 1, "samplers": ["top_k"],
                "ignore_eos": True, "cache_prompt": False, "return_tokens": True, "seed": 0,
                "n_probs": 2, "post_sampling_probs": False,
            })
            # llama.cpp's own log-probabilities of its two best tokens per step.
            top = [[[t["id"], round(t["logprob"], 5)] for t in p["top_logprobs"][:2]] for p in r["completion_probabilities"]]
            out.append((toks, r["tokens"], r["content"], top))
        return out
    finally:
        proc.terminate()
        proc.wait()


def common_prefix(seqs):
    n = 0
    while all(n < len(s) for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    return n


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--stability"]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    model, out = args
    server = shutil.which("llama-server")
    if not server:
        print("llama-server not on PATH: run ../shared/peers/setup.sh llamacpp and source its env", file=sys.stderr)
        return 1
    configs = CONFIGS if "--stability" in sys.argv else {"default": []}
    runs = {name: run_config(server, model, flags) for name, flags in configs.items()}
    cases = []
    for i, (kind, text) in enumerate(POOL):
        toks, gen, content, top = runs["default"][i]
        case = {"kind": kind, "prompt": text, "prompt_tokens": toks, "tokens": gen, "text": content, "top2_logprobs": top}
        if len(configs) > 1:
            case["stable_across_llama_cpp_configs"] = common_prefix([runs[c][i][1] for c in configs])
            print(f"{case['stable_across_llama_cpp_configs']:2d}/{N} stable: {text[-60:]!r}", file=sys.stderr)
        cases.append(case)
    version = subprocess.run([server, "--version"], capture_output=True, text=True)
    vtext = (version.stdout + version.stderr).strip().splitlines()
    doc = {
        "generator": "scripts/llamacpp-greedy-fixture.py",
        "llama_cpp": vtext[0] if vtext else "unknown",
        "model": os.path.basename(model),
        "configs": configs,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} prompts to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
